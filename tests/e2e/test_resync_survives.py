"""Re-sync's worker survives any answer: a rate limit's odd reset header, a failing report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from display.clock import SystemClock
from display.config import FeishuConfig, Secret
from display.intake.feishu.resync import MAX_RATE_LIMIT_WAIT, LarkFreeBusy, PassResult, Resync
from display.store import ScheduleStore
from display.testing.feishu_standin import FeishuStandIn, FreeBusyApi
from display.testing.waiting import wait_for
from tests.e2e.test_resync import api, standin  # noqa: F401 - fixtures

LIMITED = {"code": 99991400, "msg": "request trigger frequency limit"}


class Worker:
    """A started :class:`Resync` on a real store, fetching through the SDK from the stand-in."""

    def __init__(self, stand_in: FeishuStandIn, tmp: Path, fail_reports: int = 0) -> None:
        self.store = ScheduleStore(tmp / "schedule.db", durable=False)
        self.reports: list[tuple[PassResult, datetime | None]] = []
        self.fail_reports = fail_reports
        feishu = FeishuConfig(app_id=stand_in.app_id, app_secret=Secret(stand_in.app_secret),
                              domain=stand_in.domain)
        self.resync = Resync(LarkFreeBusy(feishu), self.store, SystemClock(), lambda: ["omm_a"],
                             on_changed=lambda rooms: None, on_report=self.report,
                             interval=0, backoff_initial=0.1, backoff_max=0.4)

    def report(self, result: PassResult, next_at: datetime | None) -> None:
        self.reports.append((result, next_at))
        if self.fail_reports:
            self.fail_reports -= 1
            raise RuntimeError("the parent's pipe broke")

    def waits(self) -> list[float]:
        return [(n - r.at).total_seconds() for r, n in self.reports if n is not None]


@pytest.fixture
def worker_factory(standin: FeishuStandIn, tmp_path: Path) -> Iterator[type[Worker]]:  # noqa: F811
    made: list[Worker] = []

    class Made(Worker):
        def __init__(self, fail_reports: int = 0) -> None:
            super().__init__(standin, tmp_path, fail_reports)
            made.append(self)

    yield Made
    for w in made:
        w.resync.close()
        w.store.close()


@pytest.mark.parametrize("reset", ["inf", "-inf", "nan", "-5", "soon", "", "1e309"])
def test_an_odd_rate_limit_reset_is_a_normal_backoff(
        api: FreeBusyApi, worker_factory: type[Worker], reset: str,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    api.answer = (429, LIMITED, {"x-ogw-ratelimit-reset": reset})
    worker = worker_factory()
    worker.resync.start()
    wait_for(lambda: len(worker.reports) >= 3, 15, what="three failed passes, backing off")
    assert all(not r.ok and "rate limited" in (r.error or "") for r, _ in worker.reports)
    assert all(0 <= w < 1 for w in worker.waits()), worker.waits()  # 0.1 doubling to 0.4
    api.answer = None
    wait_for(lambda: worker.reports[-1][0].ok, 15, what="a good pass once Feishu answers")
    assert "Traceback" not in caplog.text


def test_a_huge_rate_limit_reset_is_capped(api: FreeBusyApi,  # noqa: F811
                                           worker_factory: type[Worker]) -> None:
    api.answer = (429, LIMITED, {"x-ogw-ratelimit-reset": "1e300"})
    worker = worker_factory()
    worker.resync.start()
    wait_for(lambda: worker.reports, 15, what="a failed pass")
    assert worker.waits() == [pytest.approx(MAX_RATE_LIMIT_WAIT, abs=1)]


def test_the_worker_survives_its_own_failure(api: FreeBusyApi,  # noqa: F811
                                             worker_factory: type[Worker]) -> None:
    worker = worker_factory(fail_reports=1)
    worker.resync.start()
    wait_for(lambda: len(worker.reports) >= 3, 15, what="the failure reported, then a pass")
    failure = worker.reports[1][0]
    assert not failure.ok and "re-sync worker failed: RuntimeError" in (failure.error or "")
    assert worker.reports[-1][0].ok
