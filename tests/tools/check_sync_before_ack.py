#!/usr/bin/env python3
"""Checks an strace log of tio-crash-writer: every acknowledged update was written
(pwrite64 containing its id) and then synced (fdatasync/fsync) before its ack line.

  strace -f -ttt -xx -s 16777216 -e trace=pwrite64,write,fdatasync,fsync -o trace.txt \
    target/debug/tio-crash-writer DATA_DIR KEYS_FILE 0 > acks.txt   # stop it with SIGKILL
  python3 tests/tools/check_sync_before_ack.py trace.txt acks.txt
"""
import re, sys
trace, acks = sys.argv[1], sys.argv[2]
events = []  # (time, kind, payload)
pending = {}
truncated = 0
for line in open(trace):
    m = re.match(r"(\d+)\s+(\d+\.\d+) (.*)", line)
    if not m: continue
    pid, t, rest = m.group(1), float(m.group(2)), m.group(3)
    if "<unfinished ...>" in rest:
        pending[pid] = (t, rest); continue
    if rest.startswith("<... "):
        if pid in pending:
            t0, start = pending.pop(pid)
            rest = start.replace("<unfinished ...>", "") + rest.split("resumed>", 1)[1]
            t = t  # completion time
        else:
            continue
    if rest.startswith("fdatasync(") or rest.startswith("fsync("):
        if rest.rstrip().endswith("= 0"): events.append((t, "sync", None))
    elif rest.startswith("pwrite64("):
        # strace cuts strings longer than its -s: an id past the cut would look unwritten.
        if re.match(r'pwrite64\(\d+, "[^"]*"\.\.\.', rest):
            truncated += 1
        data = "".join(re.findall(r"\\x([0-9a-f]{2})", rest.split(",", 2)[1]))
        events.append((t, "pwrite", data))
    # An ack counts once its write returned: the writer may be killed in the middle of one.
    elif rest.startswith("write(1,") and re.search(r"\) = \d+\s*$", rest):
        data = bytes.fromhex("".join(re.findall(r"\\x([0-9a-f]{2})", rest.split(",", 2)[1]))).decode(errors="replace")
        events.append((t, "ack", data))
events.sort(key=lambda e: e[0])
acked = [l.split()[5] for l in open(acks) if l.startswith("ack ") and len(l.split()) == 6]
reported = set(acked)
written_at, synced_after = {}, {}
last_sync = None
checked = bad = 0
for t, kind, data in events:
    if kind == "pwrite":
        for uid in acked:
            if uid not in written_at and uid in data:
                written_at[uid] = t
    elif kind == "sync":
        last_sync = t
    elif kind == "ack":
        uid = data.split()[5] if len(data.split()) >= 6 else None
        # Only acks that reached the reader are promises (a write cut by the kill is not).
        if uid is None or uid not in reported: continue
        w = written_at.get(uid)
        checked += 1
        if w is None or last_sync is None or not (w < last_sync < t):
            bad += 1
            if bad <= 5: print("NOT SYNCED BEFORE ACK:", uid, w, last_sync, t)
print(f"acks checked: {checked}, acked without a prior write+sync: {bad}, syncs: {sum(1 for e in events if e[1]=='sync')}")
if truncated:
    print(f"{truncated} writes were cut short by strace: run it with a larger -s")
sys.exit(1 if bad or checked == 0 else 0)
