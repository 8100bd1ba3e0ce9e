"""How a claim's budget (free slots of the account, dial times) is shared out between the batches in turn: a
claim group at a time up to each batch's free slots (`spread`), then the calls found due one batch at a time
(`round_robin`), so running batches share the dispatchers fairly. Pure: the dispatcher supplies the numbers."""

from __future__ import annotations

from bson import ObjectId


def spread(room: dict[ObjectId, list[int]], left: int) -> int:
    """More of `left` to the batches of `room` ({batch: [share, free slots, claim group]}), a claim group each in
    turn, up to their free slots; returns what is left."""
    while left > 0:
        given = False
        for entry in room.values():
            share, free, group = entry
            n = min(group, free - share, left)
            if n > 0:
                entry[0] += n
                left -= n
                given = True
        if not given:
            break
    return left


def round_robin(candidates: dict[ObjectId, list[dict]], total: int) -> dict[ObjectId, list[dict]]:
    """Up to `total` of the candidate calls, one from each batch in turn."""
    grants: dict[ObjectId, list[dict]] = {b: [] for b in candidates}
    queues = {b: list(calls) for b, calls in candidates.items()}
    while total > 0 and any(queues.values()):
        for batch_id, queue in queues.items():
            if queue and total > 0:
                grants[batch_id].append(queue.pop(0))
                total -= 1
    return {b: g for b, g in grants.items() if g}
