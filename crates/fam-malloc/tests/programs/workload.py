"""An allocation-heavy Python workload with a deterministic output.

Builds and tears down many small objects (dicts, lists, tuples, strings, instances of a small
class hierarchy), round-trips them through JSON, sorts them, and prints digests of the results.
The output depends only on the program, so it must be the same under any correct allocator.
"""

import hashlib
import json
import random
import sys
from collections import Counter, OrderedDict, defaultdict, deque


class Shape:
    """Base of a small class hierarchy."""

    __slots__ = ("name", "tags")

    def __init__(self, name, tags):
        self.name = name
        self.tags = list(tags)

    def area(self):
        raise NotImplementedError

    def describe(self):
        return f"{type(self).__name__}({self.name}, {self.area():.3f}, {','.join(self.tags)})"


class Rect(Shape):
    __slots__ = ("w", "h")

    def __init__(self, name, tags, w, h):
        super().__init__(name, tags)
        self.w, self.h = w, h

    def area(self):
        return self.w * self.h


class Square(Rect):
    __slots__ = ()

    def __init__(self, name, tags, side):
        super().__init__(name, tags, side, side)


class Circle(Shape):
    __slots__ = ("r",)

    def __init__(self, name, tags, r):
        super().__init__(name, tags)
        self.r = r

    def area(self):
        return 3.141592653589793 * self.r * self.r


class Node:
    """A plain object with a __dict__, linked into trees."""

    def __init__(self, key, children=()):
        self.key = key
        self.children = list(children)
        self.meta = {"depth": 0, "label": f"n{key}"}

    def total(self):
        return self.key + sum(c.total() for c in self.children)


def digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def make_records(rng, n):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    records = []
    for i in range(n):
        records.append(
            {
                "id": i,
                "name": "-".join(rng.choice(words) for _ in range(rng.randint(1, 5))),
                "score": rng.random() * 1000,
                "tags": [rng.choice(words) for _ in range(rng.randint(0, 8))],
                "nested": {"a": list(range(rng.randint(0, 20))), "b": {"x": i % 7, "y": str(i)}},
            }
        )
    return records


def json_round_trips(rng):
    records = make_records(rng, 10000)
    text = json.dumps(records)
    back = json.loads(text)
    assert back == records
    for _ in range(3):
        back = json.loads(json.dumps(back, indent=1, sort_keys=True))
    by_score = sorted(back, key=lambda r: (r["score"], r["id"]))
    by_name = sorted(back, key=lambda r: (r["name"], -r["id"]))
    print("json", len(text), digest([r["id"] for r in by_score[:500]]), by_name[0]["name"])


def dicts_and_counters(rng):
    counts = Counter()
    groups = defaultdict(list)
    ordered = OrderedDict()
    for i in range(150000):
        key = f"k{rng.randint(0, 50000)}"
        counts[key] += 1
        groups[len(key)].append(i)
        ordered[key] = i
        if len(ordered) > 20000:
            ordered.popitem(last=False)
    big = {f"key-{i}": [i, str(i), (i, i * 2)] for i in range(100000)}
    for i in range(0, 100000, 3):
        del big[f"key-{i}"]
    print(
        "dicts",
        len(counts),
        counts.most_common(3),
        sorted((k, len(v)) for k, v in groups.items()),
        len(ordered),
        len(big),
        sum(v[0] for v in big.values()),
    )


def strings(rng):
    parts = []
    for i in range(60000):
        s = "".join(chr(97 + rng.randint(0, 25)) for _ in range(rng.randint(1, 30)))
        parts.append(s.upper() if i % 3 == 0 else s[::-1])
    text = " ".join(parts)
    words = text.split()
    joined = "|".join(sorted(set(words)))
    replaced = text.replace("A", "aa").replace("e", "EEE")
    print("strings", len(text), len(words), len(joined), hashlib.md5(replaced.encode()).hexdigest())


def lists_and_sorting(rng):
    data = [rng.randint(-(10**9), 10**9) for _ in range(150000)]
    tuples = [(x % 1000, str(x), x) for x in data]
    tuples.sort()
    data.sort(reverse=True)
    q = deque()
    total = 0
    for x in data[:100000]:
        q.append([x, x + 1])
        if len(q) > 1000:
            total += sum(q.popleft())
    matrix = [[(i * j) % 97 for j in range(300)] for i in range(300)]
    transposed = [list(row) for row in zip(*matrix)]
    print("lists", data[0], data[-1], tuples[0][1], total, sum(map(sum, transposed)))


def shapes(rng):
    objs = []
    for i in range(50000):
        kind = i % 3
        tags = [f"t{rng.randint(0, 9)}" for _ in range(i % 4)]
        if kind == 0:
            objs.append(Rect(f"r{i}", tags, rng.random() * 10, rng.random() * 10))
        elif kind == 1:
            objs.append(Square(f"s{i}", tags, rng.random() * 10))
        else:
            objs.append(Circle(f"c{i}", tags, rng.random() * 5))
    objs.sort(key=lambda s: (round(s.area(), 6), s.name))
    text = "\n".join(o.describe() for o in objs[::500])
    print("shapes", len(objs), hashlib.sha256(text.encode()).hexdigest()[:16])


def trees(rng):
    def build(depth, key):
        if depth == 0:
            return Node(key)
        return Node(key, [build(depth - 1, key * 3 + i) for i in range(3)])

    total = 0
    for round_ in range(6):
        root = build(8, round_)
        total += root.total()
        del root
    print("trees", total)


def main():
    rng = random.Random(20240601)
    json_round_trips(rng)
    dicts_and_counters(rng)
    strings(rng)
    lists_and_sorting(rng)
    shapes(rng)
    trees(rng)
    print("done", sys.version_info[:2] >= (3, 6))


if __name__ == "__main__":
    main()
