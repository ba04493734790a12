"""Every write to the queue. Nothing else changes QueueEntry, QueueState or QueueEvent.

- `line`: the line as users and staff shape it (enqueue, cancel, move, retry, clear,
  pause, resume, prune).
- `transfers`: a transfer's lifecycle as workers drive it (claim, begin, heartbeat,
  progress, complete, retry-or-fail, requeue expired).
- `ordering`: where entries stand: the ordering key (fair share's rounds or first come,
  first served), staff moves' keys, the counts the queue state keeps.
- `changes`: what every change shares: the queue lock, the one event per change,
  publishing after commit, asking for a dispatch.
"""
