"""Reading conversations back from a ``requests`` table.

A conversational workload gives each request a ``session_id`` and a ``turn``;
:func:`consecutive_turns` pairs every turn with the one that follows it in the
same conversation, e.g. to see how much of a follow-up's prompt came from the
prefix cache:

>>> rows = [{"session_id": 7, "turn": 0, "cached_prompt_tokens": 0},
...         {"session_id": 7, "turn": 1, "cached_prompt_tokens": 512},
...         {"session_id": -1, "turn": 0, "cached_prompt_tokens": 0}]
>>> [(a["turn"], b["turn"]) for a, b in consecutive_turns(rows)]
[(0, 1)]
"""

from __future__ import annotations


def consecutive_turns(rows) -> list[tuple[dict, dict]]:
    """``(turn k, turn k + 1)`` row pairs of every conversation in *rows*, in session order
    (rows with ``session_id`` below 0 belong to none)."""
    sessions: dict = {}
    for row in rows:
        if row["session_id"] is not None and row["session_id"] >= 0:
            sessions.setdefault(row["session_id"], {})[row["turn"]] = row
    return [(turns[t], turns[t + 1]) for _, turns in sorted(sessions.items()) for t in sorted(turns)
            if t + 1 in turns]


__all__ = ["consecutive_turns"]
