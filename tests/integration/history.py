"""A small linearizability checker for histories of operations on keys, in the
style of Jepsen's Knossos (not a simulation of Raft: it only judges what clients
saw).

A history is a list of `Op`s. Each has the process (client) that ran it, a kind,
a key, the value it wrote or the result it got, the times it was invoked and
completed (any one monotonic clock), and an outcome:

- `ok`: the server acknowledged it; its result is known and it took effect
  exactly once, at one instant between invoke and complete;
- `fail`: it definitely did not take effect (refused with a 4xx, a 503 NoLeader
  from the gate before the change was taken, a 307 not followed, a refused
  connection or a TLS handshake that never finished: nothing was sent);
- `info`: indeterminate (a timeout or a reset after the request was sent): it
  took effect at one instant after its invoke, or never. Its result is unknown.

The model is one register per key, and keys are checked one by one (a history
is linearizable if and only if its restriction to every object is:
linearizability is local, Herlihy and Wing 1990). The register's operations:

- `read`: result is the value held (None: absent);
- `write(v)`: holds v (a service's desired count, the manifest a tag names);
- `create(v)`: create-if-absent, the API's POST /v1/clusters: result "created"
  (the register was None and now holds v) or "exists" (it held something: 409
  ClusterAlreadyExists, no change);
- `delete`: delete-if-present, DELETE /v1/clusters/{name}: result "deleted" (it
  held something and now is None) or "absent" (404 ClusterNotFound).

`check_key` is the Wing-Gong search as Lowe improved it (G. Lowe, "Testing for
linearizability", 2017; the algorithm of Knossos' `wgl` and of porcupine): walk
the history's call and return events in time order, linearize a pending call
whenever the model accepts it, and backtrack when a return is reached whose
operation has not been linearized; a cache of (linearized set, state) pairs cuts
every configuration already seen. An `info` operation has no return event: it
may be linearized at any point after its call, or never. The search is bounded
by a step budget; past it the answer is "unknown", never a pass.

Beside it, two checks any read must pass, even a stale one from a follower
(writes carry values unique per write, so a value names its write):
`check_reads_come_from_writes` (a read never shows a value that only a failed
write wrote, nor one written by a write invoked after the read completed), and
`lost_acknowledged_writes`, the explanation printed when a key fails: the final
read against the writes acknowledged after the write it shows.

Reads from a follower may be stale by design and are not linearizable: the
caller marks which reads count (`Op.linearizable`) and only those, with every
write, go into the search.
"""

import itertools

OK, FAIL, INFO = "ok", "fail", "info"
READ, WRITE, CREATE, DELETE = "read", "write", "create", "delete"

_ids = itertools.count()


class Op:
    """One operation of a history. `value`: what a write or create puts; `result`:
    what a read returned, or "created"/"exists", "deleted"/"absent"; `note`: free
    text for reports (the answer's status and code)."""

    __slots__ = ("id", "process", "kind", "key", "value", "result", "invoke", "complete", "outcome",
                 "linearizable", "note")

    def __init__(self, process, kind, key, value=None, result=None, invoke=0.0, complete=None, outcome=OK,
                 linearizable=True, note=""):
        self.id = next(_ids)
        self.process = process
        self.kind = kind
        self.key = key
        self.value = value
        self.result = result
        self.invoke = invoke
        self.complete = complete
        self.outcome = outcome
        self.linearizable = linearizable  # reads only: whether the read must be linearizable
        self.note = note

    def __repr__(self):
        what = {READ: "read -> %r" % (self.result,), WRITE: "write %r" % (self.value,),
                CREATE: "create %r -> %s" % (self.value, self.result),
                DELETE: "delete -> %s" % (self.result,)}[self.kind]
        if self.outcome != OK and self.kind != WRITE:
            what = self.kind + (" %r" % (self.value,) if self.value is not None else "")
        done = "..." if self.complete is None else "%.3f" % self.complete
        extra = "" if self.kind != READ or self.linearizable else " (stale allowed)"
        return "[p%s %s %s %s %.3f-%s%s%s]" % (self.process, self.key, what, self.outcome, self.invoke, done, extra,
                                               (" " + self.note) if self.note else "")


def step(state, op):
    """The register's transition: (accepted, new state) for `op` applied to `state`.
    An `info` op's result is unknown, so any result the state allows is accepted."""
    known = op.outcome == OK
    if op.kind == READ:
        return (op.result == state), state
    if op.kind == WRITE:
        return True, op.value
    if op.kind == CREATE:
        if state is None:
            return (not known or op.result == "created"), op.value
        return (not known or op.result == "exists"), state
    if op.kind == DELETE:
        if state is not None:
            return (not known or op.result == "deleted"), None
        return (not known or op.result == "absent"), state
    raise ValueError("unknown kind %r" % op.kind)


class Result:
    """What `check_key` found: `valid` True, False, or None (unknown: the step
    budget ran out); `order` a linearization when valid; `stuck` the operations
    that could not be placed at the deepest point the search reached."""

    def __init__(self, valid, order=None, steps=0, stuck=None, ops=None):
        self.valid = valid
        self.order = order or []
        self.steps = steps
        self.stuck = stuck or []
        self.ops = ops or []

    def __repr__(self):
        return "<Result valid=%r steps=%d ops=%d>" % (self.valid, self.steps, len(self.ops))


class _Entry:
    __slots__ = ("op", "index", "call", "match", "prev", "next")

    def __init__(self, op, index, call):
        self.op, self.index, self.call = op, index, call
        self.match = self.prev = self.next = None


def searched_ops(ops):
    """The operations of a history the search considers: every op that may have
    taken effect (ok or info; a failed op is dropped, it did nothing) except reads
    that do not count (failed, indeterminate, or allowed to be stale)."""
    out = []
    for op in ops:
        if op.outcome == FAIL:
            continue
        if op.kind == READ and (op.outcome != OK or not op.linearizable):
            continue
        out.append(op)
    return out


def check_key(ops, initial=None, max_steps=2_000_000):
    """Whether the operations on one key (any order; fail ops and stale reads are
    dropped here) are linearizable from `initial`. Returns a `Result`."""
    ops = searched_ops(ops)
    events = []
    entries = []
    for i, op in enumerate(ops):
        call = _Entry(op, i, True)
        entries.append(call)
        # Calls before returns at equal times: the two overlap (the laxer reading).
        events.append((op.invoke, 0, call))
        if op.outcome == OK:
            ret = _Entry(op, i, False)
            call.match = ret
            events.append((op.complete, 1, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2].index))
    head = _Entry(None, -1, True)
    prev = head
    for _, _, e in events:
        prev.next, e.prev = e, prev
        prev = e

    def lift(e):
        e.prev.next = e.next
        if e.next:
            e.next.prev = e.prev
        m = e.match
        if m:
            m.prev.next = m.next
            if m.next:
                m.next.prev = m.prev

    def unlift(e):
        m = e.match
        if m:
            m.prev.next = m
            if m.next:
                m.next.prev = m
        e.prev.next = e
        if e.next:
            e.next.prev = e

    pending_ok = sum(1 for op in ops if op.outcome == OK)
    state = initial
    linearized = 0
    stack = []  # (call entry, state before it)
    cache = set()
    steps = 0
    deepest, stuck = -1, []
    e = head.next
    while True:
        if pending_ok == 0 or e is None:
            return Result(True, [c.op for c, _ in stack], steps, ops=ops)
        steps += 1
        if steps > max_steps:
            return Result(None, steps=steps, stuck=stuck, ops=ops)
        if e.call:
            accepted, new_state = step(state, e.op)
            if accepted:
                bits = linearized | (1 << e.index)
                if (bits, new_state) not in cache:
                    cache.add((bits, new_state))
                    stack.append((e, state))
                    state, linearized = new_state, bits
                    lift(e)
                    if e.op.outcome == OK:
                        pending_ok -= 1
                    e = head.next
                    continue
            e = e.next
        else:
            # An operation returned before it could be linearized: undo the last choice.
            if len(stack) > deepest:
                deepest = len(stack)
                stuck = [c.op for c, _ in stack[-3:]] + [e.op]
            if not stack:
                return Result(False, steps=steps, stuck=stuck, ops=ops)
            top, state = stack.pop()
            linearized &= ~(1 << top.index)
            unlift(top)
            if top.op.outcome == OK:
                pending_ok += 1
            e = top.next


def shrink(ops, initial=None, max_steps=200_000, budget=400):
    """A smaller slice of a non-linearizable history that still fails: drops one
    operation at a time while the rest stays non-linearizable (a 1-minimal subset,
    at most `budget` checks). Returns the ops kept, in invoke order."""
    kept = sorted(searched_ops(ops), key=lambda o: o.invoke)
    checks = 0
    i = 0
    while i < len(kept) and checks < budget:
        trial = kept[:i] + kept[i + 1:]
        checks += 1
        if check_key(trial, initial, max_steps).valid is False:
            kept = trial
        else:
            i += 1
    return kept


def check_reads_come_from_writes(ops, by_value_kinds=(WRITE,)):
    """The checks every read passes, stale or not, on keys whose writes carry a
    value unique per write: a read's value was written by an op that did not fail
    and was invoked before the read completed. Returns [(read, why)]."""
    writers = {}
    for op in ops:
        if op.kind in by_value_kinds:
            writers.setdefault(op.value, []).append(op)
    bad = []
    for r in ops:
        if r.kind != READ or r.outcome != OK or r.result is None:
            continue
        ws = writers.get(r.result, [])
        if not ws:
            bad.append((r, "no write of this value at all"))
        elif all(w.outcome == FAIL for w in ws):
            bad.append((r, "only a refused write wrote it: %r" % ws))
        elif all(w.invoke > r.complete for w in ws if w.outcome != FAIL):
            bad.append((r, "written only after the read completed: %r" % ws))
    return bad


def lost_acknowledged_writes(ops, final):
    """For a register key and its final read (an ok, linearizable read after every
    other op): the acknowledged writes that should have outlived what it shows.
    If it shows nothing, every acknowledged write; if it shows write W's value,
    every acknowledged write invoked after W completed (it came strictly later)."""
    acked = [w for w in ops if w.kind == WRITE and w.outcome == OK]
    if final.result is None:
        return acked
    shown = [w for w in ops if w.kind == WRITE and w.value == final.result and w.outcome != FAIL]
    if not shown:
        return []
    ends = [w.complete if w.complete is not None else float("inf") for w in shown]
    return [w for w in acked if w.invoke > min(ends)]


def check_history(ops, initial=None, max_steps=2_000_000):
    """Every key of a history: {key: Result}."""
    by_key = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return {k: check_key(v, initial, max_steps) for k, v in sorted(by_key.items())}
