// Where a field path such as `containerDefinitions[1].portMappings[0].containerPort`
// sits in a JSON text: a small scanner recording the span of every value (and of
// every member name) by its path, so an editor can select the field an error names.

/** Returns {start, end} of the value at `path` in `text` (or of the deepest
 *  parent that exists), or null when the text does not parse that far. */
export function locate(text, path) {
  const spans = new Map();
  let i = 0;
  const ws = () => { while (i < text.length && /\s/.test(text[i])) i++; };
  const str = () => {
    const s = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(s, i));
  };
  const value = (p, keyStart) => {
    ws();
    const s = i;
    const c = text[i];
    if (c === '{') {
      i++; ws();
      if (text[i] === '}') i++;
      else {
        for (;;) {
          ws();
          const ks = i;
          const k = str();
          ws(); i++; // ':'
          value(p ? `${p}.${k}` : k, ks);
          ws();
          if (text[i] === ',') { i++; continue; }
          i++; break;
        }
      }
    } else if (c === '[') {
      i++; ws();
      if (text[i] === ']') i++;
      else {
        for (let n = 0; ; n++) {
          value(`${p}[${n}]`);
          ws();
          if (text[i] === ',') { i++; continue; }
          i++; break;
        }
      }
    } else if (c === '"') {
      str();
    } else {
      while (i < text.length && /[^,\]}\s]/.test(text[i])) i++;
    }
    spans.set(p, { start: keyStart != null ? keyStart : s, end: i });
    if (i > text.length) throw new Error('truncated');
  };
  try { value(''); } catch { /* partial spans are still useful */ }
  let p = path;
  while (p) {
    if (spans.has(p)) return spans.get(p);
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    if (cut <= 0) break;
    p = p.slice(0, cut);
  }
  return spans.get(path) || null;
}

/** The field path at the start of a server message ("a[0].b: must be …"). */
export function pathOf(message) {
  const m = /^([A-Za-z_$][\w$]*(?:\[\d+\]|\.[A-Za-z_$][\w$]*)*)\s*:/.exec(message || '');
  return m ? m[1] : null;
}
