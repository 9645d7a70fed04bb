"""find_similar's by_group: copies the query rejects but that accept one another.

A small query on a big photo is often the odd one out: partly hidden, in its own light, turned
so that the verifier scores every copy a little under its threshold, while the copies, seen
against each other, score near 1 (docs/similar.md, twenty-sixth session: a real-size scene with
12 copies whose query was partly hidden scored them 0.30-0.38 against a threshold of 0.44 and
0.8-0.99 against one another). A group is accepted when it is a set of candidates that

- each score at least `band` x the verifier's threshold against the query (a look-alike of
  another kind scores near 0 against it), and
- each accept at least `size - 1` other members of the group, both ways (the verifier is not
  symmetric), counting the instances already accepted against the query as members too,

and holds at least `size` candidates the query rejected or instances already accepted, one of them
an instance already accepted (against the query, or by pixel match). This is a connected part of the
2-core (for size 3) of the mutual-acceptance graph over the band: a chain of look-alikes hanging off
one copy does not join it, and a group of look-alikes of one kind that accept one another but none
of the copies stays out (without that rule the first bench run took 3-4 look-alikes in each of 4
scenes whose copies were all found already). Asking, further, that at least half of a group be
candidates the query rejected (the query the odd one out) kept none of the gain on validation.
Off by default (SimilarSettings.by_group): same-family look-alikes still join the copies' groups.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .types import Candidate, Descriptor, MaskPatch, Verifier


def shared(a: MaskPatch, b: MaskPatch) -> float:
    """The share of the smaller mask that the other covers."""
    return np.count_nonzero(a.mask & b.seen_from(a)) / max(1, min(a.area, b.area))


class Groups:
    """The band candidates the query rejected so far, the instances it accepted, and their pair scores."""

    def __init__(self, verifier: Verifier, band: float, size: int):
        self.verifier, self.size = verifier, max(2, int(size))
        self.floor = band * verifier.threshold           # a band candidate's score against the query
        self.members: list[tuple[Candidate | None, Descriptor, np.ndarray]] = []   # None: accepted already
        self._pairs: dict[tuple[int, int], bool] = {}
        self._refused: set[int] = set()                  # in a group but not accepted (mostly known by then)

    def keep(self, c: Candidate, desc: Descriptor, grid: np.ndarray) -> None:
        """A candidate the query rejected: kept when it scored in the band and is not mostly a
        kept one again (two proposals on one object must not make a group of it)."""
        if c.score >= self.floor and not any(m[0] is not None and shared(c.patch, m[0].patch) > 0.5
                                             for m in self.members):
            self.members.append((c, desc, grid))

    def accepted(self, desc: Descriptor) -> None:
        """An instance accepted against the query (or by a group): a member that is already in."""
        self.members.append((None, desc, np.zeros(0)))

    def _mutual(self, i: int, j: int) -> bool:
        key = (min(i, j), max(i, j))
        if key not in self._pairs:
            a, b = self.members[i][1], self.members[j][1]
            t = self.verifier.threshold
            self._pairs[key] = self.verifier.score(a, b) >= t and self.verifier.score(b, a) >= t
        return self._pairs[key]

    def _with_an_instance(self, alive: set[int]) -> set[int]:
        """The members of alive whose connected part (mutual acceptance) holds `size` members or more,
        one of them an instance accepted already: a group of look-alikes that accept one another
        but none of the copies stays out."""
        out: set[int] = set()
        left = set(alive)
        while left:
            part, todo = set(), [left.pop()]
            while todo:
                i = todo.pop()
                part.add(i)
                near = {j for j in left if self._mutual(i, j)}
                left -= near
                todo += near
            if len(part) >= self.size and any(self.members[i][0] is None for i in part):
                out |= part
        return out

    def take(self, accept: Callable[[Candidate, Descriptor, np.ndarray], bool]) -> int:
        """Accept (through `accept`, which may refuse one, e.g. a mask now mostly known) the band
        candidates in a group; returns how many were accepted."""
        pending = [i for i, m in enumerate(self.members) if m[0] is not None]
        if not pending:
            return 0
        alive = set(range(len(self.members))) - self._refused
        need = self.size - 1
        changed = True
        while changed:                                   # the k-core: drop members with too few links
            changed = False
            for i in sorted(alive):
                if sum(1 for j in alive if j != i and self._mutual(i, j)) < need:
                    alive.discard(i)
                    changed = True
        joined = self._with_an_instance(alive)
        taken = 0
        for i in pending:
            if i not in joined:
                continue
            c, desc, grid = self.members[i]
            if accept(c, desc, grid):                    # type: ignore[arg-type]
                self.members[i] = (None, desc, grid)     # a member now
                taken += 1
            else:
                self._refused.add(i)
        return taken
