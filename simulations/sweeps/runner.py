"""Run a sweep on Dask: theory curves and (point, seed) simulations, resumable.

* Theory: one task per curve (the points sharing every axis but ``sweep.continuation`` and the
  ``sim.*`` axes; each point otherwise), each point written as soon as it is solved. Points that
  differ only in ``sim.*`` fields (``sim.d``, seeds, optimiser settings) are solved once.
  Continuation: the points of a curve are solved in the order of ``sweep.continuation``, each
  fine-tuning solve started from its neighbour's solution (read from the neighbour's record, so
  a resumed curve continues from the points an earlier run finished) as one more start: every
  point still runs its own branch search from the cold starts and carries its own flags
  (:func:`theory.predict.predict_finetuning`), so a second branch along the curve is found, not
  followed past silently.
* Pre-training theory (when the fine-tuning stage runs): one task per :func:`theory.predict.pretrain_key`,
  its state passed to every curve and Bayes-bound task that needs it.
* Bayes bound (``sweep.bayes_bound``): one task per :func:`theory.predict.bayes_bound_key` (it
  does not read λ′, so the curves of every λ′ at an α′ share it); each curve task waits for the
  bounds of its points and merges them into its records.
* Simulation: one task per (point, seed). The pre-trained backbone depends only on
  (model, pretrain, sim.d, optimiser settings, seed): it is computed once per such key as its own
  Dask task and passed to every fine-tuning task that shares it.
* Resume: a task whose record exists in the store (and is a valid record: a corrupt one is
  redone, with a warning naming it) is not submitted again; a backbone is not recomputed when
  every fine-tuning task that needs it is finished. Records are written by the workers
  themselves, atomically (:mod:`.store`), so a killed sweep loses only unfinished tasks (the tasks: :mod:`.tasks`).
* Concurrency: every task is claimed just before it is submitted (:mod:`.claims`), and a run
  keeps at most twice its worker threads in flight, so two sweeps on one store split the tasks
  between them; each waits at the end for the tasks the other holds, and the claims of a killed
  run are taken over by the next run (kill -9 then resume runs every task once).

``scheduler=None`` starts a ``LocalCluster`` with ``workers`` single-threaded processes;
``scheduler="tcp://host:8786"`` uses an existing cluster (e.g. dask-jobqueue on Slurm, README);
``workers=0`` runs every task in this process (debugging, tiny sweeps).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from theory.config import Config
from theory.predict import bayes_bound_key, pretrain_key
from theory.provenance import provenance

from .claims import Claims
from .spec import SweepPoint, SweepSpec
from .store import ResultStore
from .tasks import backbone_key, backbone_task, bayes_bound_task, finetune_task, \
    pretrain_state_task, theory_curve_task, theory_key

__all__ = ["run_sweep", "SweepReport", "backbone_key", "theory_key"]

@dataclass(frozen=True)
class SweepReport:
    """What a run did: ``submitted`` tasks run here, ``skipped`` records already finished at the
    start, ``by_others`` finished meanwhile by another run on the same store, ``backbones``
    pre-trainings, ``unavailable`` (point, seed) simulations left out because the setting is
    theory-only (``pretrain.estimator = "bayes"``)."""

    submitted: int
    skipped: int
    backbones: int
    seconds: float
    store: str
    by_others: int = 0
    unavailable: int = 0


class _InlineFuture:
    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


class _InlineClient:
    """Runs tasks immediately in this process (``workers=0``)."""

    def submit(self, fn, *args, **kwargs):
        kwargs.pop("key", None)
        kwargs.pop("pure", None)
        resolve = lambda a: a.result() if isinstance(a, _InlineFuture) else a
        args = [{k: resolve(v) for k, v in a.items()} if isinstance(a, dict) else resolve(a)
                for a in args]
        return _InlineFuture(fn(*args))

    def close(self):
        pass


def _point_task(point: SweepPoint):
    return point.as_dict(), point.config.to_dict(), point.point_id


#: seconds between two looks at the tasks another run holds
POLL_S = 1.0


def _client(workers: int, scheduler: str | None):
    if workers < 0:
        raise ValueError(f"workers = {workers}: must be >= 0 (0 runs the tasks in this process)")
    if scheduler is None and workers == 0:
        return _InlineClient(), None
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=40)
    return Client(cluster), cluster


class _Flight:
    """The futures in flight, each with the records it writes: a task's claims are released as
    soon as it ends (its error re-raised here), and at most ``limit()`` are in flight at once
    (None: no limit; re-read as a cluster grows), so a run claims only what its workers are
    about to compute and a second run on the same store takes the rest."""

    def __init__(self, claims: Claims, limit, progress: bool):
        from tqdm import tqdm

        self.claims, self.limit, self.count = claims, limit, 0
        self.pending: list = []
        self.bar = tqdm(total=0, disable=not progress, desc="sweep", unit="task")

    def add(self, future, records: list) -> None:
        self.count += 1
        self.bar.total = self.count
        self.bar.refresh()
        if isinstance(future, _InlineFuture):     # already computed
            self._finished(future, records)
        else:
            self.pending.append((future, records))

    def make_room(self) -> None:
        """Block until fewer than ``limit`` futures are in flight."""
        while self.pending:
            limit = self.limit()
            if limit is None or len(self.pending) < limit:
                return
            self._wait_one()

    def finish(self) -> None:
        while self.pending:
            self._wait_one()
        self.bar.close()

    def _wait_one(self) -> None:
        from dask.distributed import wait

        wait([f for f, _ in self.pending], return_when="FIRST_COMPLETED")
        running = []
        for future, records in self.pending:
            if future.done():
                self._finished(future, records)
            else:
                running.append((future, records))
        self.pending = running

    def _finished(self, future, records: list) -> None:
        for record in records:
            self.claims.release(record)
        future.result()   # re-raise a task's error here
        self.bar.update(1)


def _in_flight_limit(client):
    """A function giving the futures a run keeps in flight: twice the cluster's worker threads
    now (at least 2; None, no limit, in process or when the scheduler cannot say)."""
    if isinstance(client, _InlineClient):
        return lambda: None

    def limit():
        try:
            threads = sum(client.nthreads().values())
        except Exception:   # noqa: BLE001 (an exotic scheduler: no limit rather than no run)
            return None
        return 2 * max(threads, 1)

    return limit


class _Pass:
    """One planning pass: claim every unfinished, unclaimed task and submit it, a curve or a
    backbone group at a time as room is made in ``flight``."""

    def __init__(self, spec: SweepSpec, store: ResultStore, client, claims: Claims,
                 flight: _Flight):
        self.spec, self.store, self.client, self.claims = spec, store, client, claims
        self.flight = flight
        self.done = self.backbones = self.unavailable = 0
        self.done_records: list = []       # record paths found finished
        self.held: dict = {}               # record path -> owner of the live claim

    def _take(self, kind: str, point_id: str, seed=None) -> bool:
        """True when the task must be run here (unfinished and now claimed by this run)."""
        record = self.store.path(kind, point_id, seed)
        if self.store.has(kind, point_id, seed):
            self.claims.tidy(record)
            self.done += 1
            self.done_records.append(record)
            return False
        owner = self.claims.claim(record)
        if owner is not None:
            self.held[record] = owner
            return False
        if self.store.has(kind, point_id, seed):   # finished between the two looks
            self.claims.release(record)
            self.done += 1
            self.done_records.append(record)
            return False
        return True

    def theory(self, pretrain_futures: dict, bayes_futures: dict) -> None:
        spec, client, store = self.spec, self.client, self.store
        for curve in spec.curves():
            self.flight.make_room()
            groups: dict[str, list] = {}
            # continuation: every theory group's predecessor along the curve (its alias ids,
            # finished or not), whose solution the curve task starts the group's solve from
            order: dict[str, list] = {}
            for p in curve:
                order.setdefault(theory_key(p.config), []).append(p.point_id)
                if self._take("theory", p.point_id):
                    groups.setdefault(theory_key(p.config), []).append(_point_task(p))
            todo = list(groups.values())
            if not todo:
                continue
            keys = list(order)
            previous = {k: (order[keys[i - 1]] if i > 0 and spec.continuation else [])
                        for i, k in enumerate(keys)}
            before = [previous[k] for k in groups]
            bounds, states = {}, {}
            if "finetune" in spec.stages:
                # the pre-training theory is solved once per sweep for each of its keys and
                # shared (as futures) by the curve and Bayes-bound tasks that need it
                for aliases in todo:
                    cfg = Config.from_dict(aliases[0][1])
                    pkey = pretrain_key(cfg)
                    if pkey not in pretrain_futures:
                        pretrain_futures[pkey] = client.submit(
                            pretrain_state_task, cfg.to_dict(), key=f"pretrain-{pkey}",
                            pure=False)
                    states[pkey] = pretrain_futures[pkey]
                    if not spec.bayes_bound:
                        continue
                    bkey = bayes_bound_key(cfg)
                    if bkey not in bayes_futures:
                        bayes_futures[bkey] = client.submit(
                            bayes_bound_task, cfg.to_dict(), pretrain_futures[pkey],
                            key=f"bayes-{bkey}", pure=False)
                    bounds[bkey] = bayes_futures[bkey]
            paths = [store.path("theory", a[2]) for aliases in todo for a in aliases]
            self.flight.add(client.submit(theory_curve_task, todo, str(store.root), spec.stages,
                                          bounds, states, before, pure=False), paths)

    def simulate(self) -> None:
        """One backbone task per group of (point, seed) sharing it; each group's tasks are
        claimed just before the group is submitted."""
        spec, client, store = self.spec, self.client, self.store
        groups: dict[str, list] = {}
        for point in spec.points():
            if point.config.pretrain.estimator == "bayes":
                self.unavailable += len(spec.seeds)   # theory-only (MODEL.md M7)
                continue
            for seed in spec.seeds:
                groups.setdefault(backbone_key(point.config, seed), []).append((point, seed))
        for key, candidates in groups.items():
            self.flight.make_room()
            tasks = [(point, seed) for point, seed in candidates
                     if self._take("simulate", point.point_id, seed)]
            if not tasks:
                continue
            point0, seed0 = tasks[0]
            keep_data = any(point.config.finetune.reuse for point, _ in tasks)
            backbone = client.submit(backbone_task, point0.config.to_dict(), seed0,
                                     keep_data, key=f"backbone-{key}", pure=False)
            self.backbones += 1
            for point, seed in tasks:
                self.flight.add(client.submit(finetune_task, *_point_task(point), seed,
                                              backbone, str(store.root), pure=False),
                                [store.path("simulate", point.point_id, seed)])


def _wait_for_others(held: dict, claims: Claims, store: ResultStore, name: str, log) -> None:
    """Block until every task another live run holds is finished or its claim went stale."""
    owners = {(o.get("pid"), o.get("host"), o.get("started")) for o in held.values()}
    who = "; ".join(f"pid {pid} on {host} (started {started})" for pid, host, started in owners)
    log(f"sweep {name}: waiting for {len(held)} tasks claimed by another run on this store "
        f"({who}); they are computed once, by that run")
    pending = dict(held)
    while pending:
        for record in list(pending):
            kind, stem = record.parent.name, record.stem
            if record.exists() and store.has(kind, *_split_stem(kind, stem)):
                del pending[record]
            elif claims.holder(record) is None:     # released unfinished, or stale: replan
                return
        if pending:
            time.sleep(POLL_S)


def _split_stem(kind: str, stem: str):
    if kind == "simulate":
        point_id, _, seed = stem.rpartition("_s")
        return point_id, int(seed)
    return stem, None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_sweep(spec: SweepSpec, store_root: str, *, workers: int = 2, scheduler: str | None = None,
              progress: bool = True, log=_stderr) -> SweepReport:
    """Run (or resume) every unfinished task of ``spec``; see the module docstring.

    Tasks are claimed first (:mod:`.claims`): a task another live run on the same store holds
    is not computed here; this run waits for it after its own tasks (``log`` says so), and takes
    it over if that run dies. ``workers`` must be >= 0."""
    start = time.perf_counter()
    store = ResultStore(store_root)
    client, cluster = _client(workers, scheduler)
    store.write_spec({"name": spec.name, "axes": list(spec.axes), "run": list(spec.run),
                      "seeds": list(spec.seeds), "continuation": spec.continuation,
                      "base": spec.base.to_dict(), "meta": provenance()})
    submitted = skipped = by_others = backbones = unavailable = 0
    first, waited_for = True, set()
    try:
        with Claims(store.root) as claims:
            limit = _in_flight_limit(client)
            while True:
                flight = _Flight(claims, limit, progress)
                plan = _Pass(spec, store, client, claims, flight)
                if "theory" in spec.run:
                    plan.theory({}, {})
                if "simulate" in spec.run:
                    plan.simulate()
                flight.finish()
                if first:
                    skipped, unavailable = plan.done, plan.unavailable
                else:
                    by_others += sum(r in waited_for for r in plan.done_records)
                first = False
                submitted += flight.count
                backbones += plan.backbones
                if not plan.held:
                    break
                waited_for |= set(plan.held)
                _wait_for_others(plan.held, claims, store, spec.name, log)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return SweepReport(submitted=submitted, skipped=skipped, backbones=backbones,
                       seconds=time.perf_counter() - start, store=str(store.root),
                       by_others=by_others, unavailable=unavailable)
