#!/usr/bin/env python3
"""Checks an strace log of tio-crash-writer: every acknowledged update was written
(pwrite64 containing its id) and then synced (fdatasync/fsync) before its ack line.

  strace -f -ttt -xx -s 200000 -e trace=pwrite64,write,fdatasync,fsync -o trace.txt \
    target/debug/tio-crash-writer DATA_DIR KEYS_FILE 0 > acks.txt   # stop it with SIGKILL
  python3 tests/tools/check_sync_before_ack.py trace.txt acks.txt
"""
import re, sys
trace, acks = sys.argv[1], sys.argv[2]
events = []  # (time, kind, payload)
pending = {}
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
        data = "".join(re.findall(r"\\x([0-9a-f]{2})", rest.split(",", 2)[1]))
        events.append((t, "pwrite", data))
    elif rest.startswith("write(1,"):
        data = bytes.fromhex("".join(re.findall(r"\\x([0-9a-f]{2})", rest.split(",", 2)[1]))).decode(errors="replace")
        events.append((t, "ack", data))
events.sort(key=lambda e: e[0])
acked = [l.split()[5] for l in open(acks) if l.startswith("ack ") and len(l.split()) == 6]
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
        if uid is None: continue
        w = written_at.get(uid)
        checked += 1
        if w is None or last_sync is None or not (w < last_sync < t):
            bad += 1
            if bad <= 5: print("NOT SYNCED BEFORE ACK:", uid, w, last_sync, t)
print(f"acks checked: {checked}, acked without a prior write+sync: {bad}, syncs: {sum(1 for e in events if e[1]=='sync')}")
sys.exit(1 if bad or checked == 0 else 0)
