// Tables of one page at most, with a pager that walks nextToken forward and
// remembers the tokens it came through to go back.
import { h, clear, empty } from './dom.js';

export const PAGE_SIZE = 50;

/** A table: `columns` [{label, cell(row) → node|string, cls}], `rowId(row)` for
 *  data-id. Returns the <div> wrapping it (or an empty state when no rows). */
export function table(columns, rows, rowId, emptyState) {
  if (!rows.length) return emptyState || empty('Nothing here yet');
  const thead = h('thead', h('tr', columns.map((c) => h('th', { scope: 'col', class: c.cls || null }, c.label))));
  const tbody = h('tbody', rows.map((r) =>
    h('tr', { dataset: rowId ? { id: rowId(r) } : {} },
      columns.map((c) => h('td', { class: c.cls || null, 'data-label': c.label }, c.cell(r))))));
  return h('div.table-wrap', h('table.table', thead, tbody));
}

/** Keeps the paging state of one table: `token` is the page being shown. */
export class Pager {
  constructor(onMove) {
    this.stack = [];
    this.token = '';
    this.next = '';
    this.onMove = onMove;
  }

  reset() { this.stack = []; this.token = ''; this.next = ''; }

  /** Prev/next buttons and "rows a–b of total" for the page just loaded. */
  controls(count, total) {
    const first = this.stack.length * PAGE_SIZE + (count ? 1 : 0);
    const last = this.stack.length * PAGE_SIZE + count;
    const prev = h('button.btn.btn-small', { type: 'button', disabled: !this.stack.length, dataset: { page: 'prev' } }, '‹ Previous');
    const next = h('button.btn.btn-small', { type: 'button', disabled: !this.next, dataset: { page: 'next' } }, 'Next ›');
    prev.addEventListener('click', () => { this.token = this.stack.pop() || ''; this.onMove(); });
    next.addEventListener('click', () => { this.stack.push(this.token); this.token = this.next; this.onMove(); });
    const text = total != null ? `${first}–${last} of ${total}` : `${first}–${last}`;
    return h('div.pager', h('span.muted', count ? text : ''), h('div.pager-buttons', prev, next));
  }
}

export function replace(slot, ...nodes) {
  clear(slot);
  slot.append(...nodes.filter(Boolean));
}
