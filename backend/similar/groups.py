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
Same-family look-alikes still join the copies' groups: a look-alike that one or two copies accept
links into the group (docs/similar.md, twenty-sixth session).

The set rule (SimilarSettings.group_anchors > 0, by_set) asks more of each candidate and less of the
group: it is accepted when at least `anchors` of the instances accepted against the query, and at
least `share` of them, accept it both ways. Only those instances vote (not a candidate this rule
took), so look-alikes cannot vote one another in, and a look-alike that one copy of many accepts is
outvoted (twenty-seventh session: on the engine's own candidates of 282 validation scenes the group
rule took 74 copies for 7 look-alikes, the set rule with 3 votes and half the voters 38 for 1;
bench/group_rules.py). The set rule is the default (SimilarSettings.group_anchors 3, group_share 0.5).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .types import Candidate, Descriptor, MaskPatch, Verifier


def shared(a: MaskPatch, b: MaskPatch) -> float:
    """The share of the smaller mask that the other covers."""
    return np.count_nonzero(a.mask & b.seen_from(a)) / max(1, min(a.area, b.area))


def by_set(band: list[int], voters: list[int], mutual: Callable[[int, int], bool], anchors: int,
           share: float) -> list[int]:
    """The set rule: the band members that at least `anchors` voters, and `share` of them, accept both ways."""
    if len(voters) < anchors:
        return []
    out = []
    for i in band:
        yes = sum(1 for j in voters if mutual(i, j))
        if yes >= anchors and yes >= share * len(voters):
            out.append(i)
    return out


def by_graph(nodes: set[int], voters: set[int], mutual: Callable[[int, int], bool], size: int) -> set[int]:
    """The group rule: the nodes in a connected part of the (size - 1)-core of the mutual-acceptance graph
    that holds `size` nodes or more, one of them a voter (a group of look-alikes that accept one another
    but none of the copies stays out)."""
    alive = set(nodes)
    changed = True
    while changed:                                       # the k-core: drop members with too few links
        changed = False
        for i in sorted(alive):
            if sum(1 for j in alive if j != i and mutual(i, j)) < size - 1:
                alive.discard(i)
                changed = True
    out: set[int] = set()
    left = set(alive)
    while left:
        part, todo = set(), [left.pop()]
        while todo:
            i = todo.pop()
            part.add(i)
            near = {j for j in left if mutual(i, j)}
            left -= near
            todo += near
        if len(part) >= size and part & voters:
            out |= part
    return out


class Groups:
    """The band candidates the query rejected so far, the instances it accepted, and their pair scores."""

    def __init__(self, verifier: Verifier, band: float, size: int, anchors: int = 0, share: float = 0.0):
        """anchors > 0: the set rule (by_set) instead of the group's (by_graph)."""
        self.verifier, self.size = verifier, max(2, int(size))
        self.anchors, self.share = int(anchors), float(share)
        self.floor = band * verifier.threshold           # a band candidate's score against the query
        self.members: list[tuple[Candidate | None, Descriptor, np.ndarray]] = []   # None: accepted already
        self._pairs: dict[tuple[int, int], bool] = {}
        self._refused: set[int] = set()                  # in a group but not accepted (mostly known by then)
        self._voters: list[int] = []                     # the instances accepted against the query or by pixel match

    def keep(self, c: Candidate, desc: Descriptor, grid: np.ndarray) -> None:
        """A candidate the query rejected: kept when it scored in the band and is not mostly a
        kept one again (two proposals on one object must not make a group of it)."""
        if c.score >= self.floor and not any(m[0] is not None and shared(c.patch, m[0].patch) > 0.5
                                             for m in self.members):
            self.members.append((c, desc, grid))

    def accepted(self, desc: Descriptor) -> None:
        """An instance accepted against the query (or by pixel match): a member that is already in."""
        self._voters.append(len(self.members))
        self.members.append((None, desc, np.zeros(0)))

    def _mutual(self, i: int, j: int) -> bool:
        key = (min(i, j), max(i, j))
        if key not in self._pairs:
            a, b = self.members[i][1], self.members[j][1]
            t = self.verifier.threshold
            self._pairs[key] = self.verifier.score(a, b) >= t and self.verifier.score(b, a) >= t
        return self._pairs[key]

    def take(self, accept: Callable[[Candidate, Descriptor, np.ndarray], bool]) -> int:
        """Accept (through `accept`, which may refuse one, e.g. a mask now mostly known) the band
        candidates in a group (or, with anchors, by the set rule); returns how many were accepted."""
        pending = [i for i, m in enumerate(self.members) if m[0] is not None and i not in self._refused]
        if not pending:
            return 0
        if self.anchors > 0:                             # the set rule: the instances accepted vote
            chosen = by_set(pending, self._voters, self._mutual, self.anchors, self.share)
        else:
            members = set(range(len(self.members))) - self._refused
            voters = {i for i in members if self.members[i][0] is None}   # accepted already (by a group too)
            joined = by_graph(members, voters, self._mutual, self.size)
            chosen = [i for i in pending if i in joined]
        return self._accept(chosen, accept)

    def _accept(self, chosen: list[int], accept: Callable[[Candidate, Descriptor, np.ndarray], bool]) -> int:
        taken = 0
        for i in chosen:
            c, desc, grid = self.members[i]
            if accept(c, desc, grid):                    # type: ignore[arg-type]
                self.members[i] = (None, desc, grid)     # a member now
                taken += 1
            else:
                self._refused.add(i)
        return taken
