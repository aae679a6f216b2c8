"""Deterministic demo data: the event and customer records, the clock and ``advance()``.

Same seed and same calls give identical data. How records are stored and served in
``(updated_at, id)`` order, cheaply for a million events, is table.py's job.
``updated_since`` is inclusive: records with ``updated_at >= updated_since``.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from analytics_kit.demo.table import CUSTOMER_SPAN, EPOCH, EVENT_SPAN, Table, fmt_ts

EVENT_TYPES = ["page_view"] * 50 + ["click"] * 30 + ["signup"] * 8 + ["purchase"] * 10 + ["refund"] * 2
PAGES = ["/", "/pricing", "/docs", "/blog", "/signup", "/checkout", "/features", "/about"]
DEVICES = ["desktop"] * 5 + ["mobile"] * 4 + ["tablet"]
COUNTRIES = ["DE", "US", "US", "GB", "FR", "NL", "ES", "IT", "SE", "PL", "BR", "IN", "JP"]
CAMPAIGNS = [None] * 6 + ["spring_sale", "newsletter", "retargeting", "partner_x"]
CAMPAIGN_NAMES = ["spring_sale", "newsletter", "retargeting", "partner_x", "launch_week"]
PLANS = ["free"] * 6 + ["pro"] * 3 + ["enterprise"]
FIRST = ["Ada", "Ben", "Chloe", "David", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas",
         "Kira", "Luca", "Maya", "Noah", "Olga", "Paul", "Rosa", "Sven", "Tara", "Yusuf"]
LAST = ["Adler", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ivanova",
        "Jansen", "Kowalski", "Lopez", "Meyer", "Nowak", "Okafor", "Petrov", "Rossi", "Schmidt",
        "Tanaka", "Weber"]
RESOURCES = {"events": "events", "resource": "events", "customers": "customers"}


@dataclass
class AdvanceResult:
    """What one ``advance()`` changed; ids are ints for events, ``"cus_…"`` strings for customers."""

    resource: str
    new_ids: list = field(default_factory=list)
    updated_ids: list = field(default_factory=list)
    deleted_ids: list = field(default_factory=list)
    purged_ids: list = field(default_factory=list)
    now: str = ""  # the API clock after the advance


class _Events(Table):
    def __init__(self, n: int, seed: int, customers: Table) -> None:
        super().__init__(n, seed, 1)
        self.customers = customers
        self.n_customers0 = customers.n

    def rec_id(self, idx: int) -> int:
        return idx

    def _fields(self, idx: int, ts: int, n_customers: int | None = None) -> tuple:
        h1, h2 = self._hash(idx)
        if ts < 0:
            ts = self.original_ts(idx, h2)
        etype = EVENT_TYPES[h1 % 100]
        value = None
        if etype == "purchase":
            value = (500 + h2 % 49500) / 100
        elif etype == "refund":
            value = -(500 + h2 % 19500) / 100
        return (f"cus_{(h1 >> 24) % (n_customers or self.n_customers0) + 1:05d}", fmt_ts(ts), etype,
                value, PAGES[(h1 >> 12) & 7], DEVICES[(h1 >> 8) % 10],
                COUNTRIES[(h1 >> 16) % 13], CAMPAIGNS[(h1 >> 20) % 10])

    def make(self, idx: int, ts: int, n_customers: int | None = None) -> dict:
        cust, stamp, etype, value, page, device, country, campaign = self._fields(idx, ts, n_customers)
        return {
            "id": idx,
            "customer_id": cust,
            "timestamp": stamp,
            "event_type": etype,
            "value": value,
            "properties": {"page": page, "device": device, "country": country, "campaign": campaign},
            "updated_at": stamp,
            "deleted": False,
        }

    def render(self, idx: int) -> str:
        # same text as json.dumps(self.make(idx, -1), separators=(",", ":")) at twice the speed;
        # every string here is plain ASCII from fixed lists, so no escaping is needed
        cust, stamp, etype, value, page, device, country, campaign = self._fields(idx, -1)
        campaign = "null" if campaign is None else f'"{campaign}"'
        return (f'{{"id":{idx},"customer_id":"{cust}","timestamp":"{stamp}",'
                f'"event_type":"{etype}","value":{"null" if value is None else repr(value)},'
                f'"properties":{{"page":"{page}","device":"{device}","country":"{country}",'
                f'"campaign":{campaign}}},'
                f'"updated_at":"{stamp}","deleted":false}}')

    def make_new(self, idx: int, ts: int) -> dict:
        n_cust = max(1, self.customers.next_idx - 1)
        return self.make(idx, ts, n_cust)

    def copy(self, rec: dict) -> dict:
        out = dict(rec)
        out["properties"] = dict(rec["properties"])
        return out

    def mutate(self, rec: dict, rng: random.Random) -> None:
        # a late correction: money events change value, the others their attribution
        if rec["event_type"] == "purchase":
            rec["value"] = round(rng.uniform(5, 500), 2)
        elif rec["event_type"] == "refund":
            rec["value"] = -round(rng.uniform(5, 200), 2)
        else:
            props = rec["properties"]
            props["campaign"] = rng.choice([c for c in CAMPAIGN_NAMES if c != props["campaign"]])


class _Customers(Table):
    span_start = EPOCH - CUSTOMER_SPAN
    span = CUSTOMER_SPAN

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(n, seed, 2)

    def rec_id(self, idx: int) -> str:
        return f"cus_{idx:05d}"

    def make(self, idx: int, ts: int) -> dict:
        h1, h2 = self._hash(idx)
        if ts < 0:
            ts = self.original_ts(idx, h2)
        first, last = FIRST[h1 % 20], LAST[(h1 >> 8) % 20]
        stamp = fmt_ts(ts)
        return {
            "id": self.rec_id(idx),
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{idx}@example.com",
            "plan": PLANS[(h1 >> 16) % 10],
            "country": COUNTRIES[(h1 >> 24) % 13],
            "created_at": stamp,
            "updated_at": stamp,
            "deleted": False,
        }

    make_new = make

    def mutate(self, rec: dict, rng: random.Random) -> None:
        rec["plan"] = rng.choice([p for p in ("free", "pro", "enterprise") if p != rec["plan"]])


class DemoData:
    """Both resources, the API clock and the advance counter; thread-safe."""

    def __init__(self, events: int = 1000, customers: int = 50, seed: int = 7) -> None:
        for name, v in (("events", events), ("customers", customers), ("seed", seed)):
            if not isinstance(v, int) or isinstance(v, bool) or (v < 0 and name != "seed"):
                raise ValueError(f"{name} must be an integer" + (" >= 0" if name != "seed" else ""))
        if events > 0 and customers < 1:
            raise ValueError("events need at least one customer to refer to")
        self.seed = seed
        self.lock = threading.RLock()
        self.clock = EPOCH + EVENT_SPAN
        self.advances = 0
        cust = _Customers(customers, seed)
        self.tables: dict[str, Table] = {"customers": cust, "events": _Events(events, seed, cust)}

    def table(self, resource: str) -> Table:
        try:
            return self.tables[RESOURCES[resource]]
        except KeyError:
            raise ValueError(f"unknown resource {resource!r}; use 'events' or 'customers'") from None

    def page(self, resource: str, offset: int, limit: int, since: float | None,
             raw: bool = False) -> tuple[list, int]:
        """One page (dicts, or JSON texts if raw) and the number of records matching the filter."""
        with self.lock:
            t = self.table(resource)
            base = 0 if since is None else t.since_position(since)
            total = t.count() - base
            if offset >= total:
                return [], total
            return t.slice(base + offset, base + offset + limit, raw), total

    def records(self, resource: str = "events", include_deleted: bool = True) -> list[dict]:
        with self.lock:
            t = self.table(resource)
            out = t.slice(0, t.count())
        return out if include_deleted else [r for r in out if not r["deleted"]]

    def advance(self, new: int = 10, updated: int = 5, deleted: int = 0, purged: int = 0,
                resource: str = "events", seconds: int = 3600) -> AdvanceResult:
        for name, v in (("new", new), ("updated", updated), ("deleted", deleted),
                        ("purged", purged), ("seconds", seconds)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0")
        with self.lock:
            t = self.table(resource)
            self.advances += 1
            rng = random.Random(f"{self.seed}:{RESOURCES[resource]}:{self.advances}")
            picks = t.pick(updated + deleted + purged, rng)
            window = self.clock

            def stamp() -> int:
                return window + 1 + rng.randrange(seconds) if seconds else window

            res = AdvanceResult(resource=RESOURCES[resource])
            for idx in picks[:updated]:
                rec = t.copy(t.current(idx))
                t.mutate(rec, rng)
                t.put(idx, rec, stamp())
                res.updated_ids.append(idx)
            for idx in picks[updated:updated + deleted]:
                rec = t.copy(t.current(idx))
                rec["deleted"] = True
                t.put(idx, rec, stamp())
                t.deleted.add(idx)
                res.deleted_ids.append(idx)
            for idx in picks[updated + deleted:]:
                t.purge(idx)
                res.purged_ids.append(idx)
            for _ in range(new):
                idx = t.next_idx
                t.next_idx += 1
                ts = stamp()
                t.put(idx, t.make_new(idx, ts), ts)
                res.new_ids.append(idx)
            t.reindex()
            self.clock += seconds
            res.now = fmt_ts(self.clock)
            for name in ("new_ids", "updated_ids", "deleted_ids", "purged_ids"):
                setattr(res, name, [t.rec_id(i) for i in sorted(getattr(res, name))])
            return res
