"""The daemon's service tree joins MESSAGE relaying to event charging, and shows its figures."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from b2bua.call.events import Side
from b2bua.charging.controller import ChargingController
from b2bua.charging.messages import RoSettings
from b2bua.charging.stats import EVENT_STAT_NAMES
from b2bua.config import parse_config_text
from b2bua.ops.exposition import render
from b2bua.ops.metrics import EVENT_METRICS, Sources, collect
from b2bua.tap import build_service
from tests.charging.fakes import SDP_AUDIO, SDP_VIDEO, invite, make_context

CONFIG = (
    "[sip]\nlisten = udp:127.0.0.1:5999\n"
    "[diameter]\norigin_host = b2bua.test\norigin_realm = test\n"
    "[peer:ocs]\nuri = aaa://127.0.0.1:3999\nhost = ocs.test\n"
    "[route:all]\nnext_hop = 127.0.0.1:5998\ncharging = orig\nevent_charging = orig\n"
    "event_charging_mode = reservation\n"
    "[charging]\nsms_service_identifier = 7\nsms_rating_group = 77\n"
    "direct_debiting_failure_handling = continue\n"
    "[metrics]\nlisten =\n"
)


def test_the_charging_controller_observes_every_relayed_message() -> None:
    """With Diameter configured, the charging controller holds MESSAGEs for the charger."""
    root = build_service(parse_config_text(CONFIG), MemoryReactorClock())
    (observer,) = root.calls.messages.observers
    assert isinstance(observer, ChargingController)
    assert observer.events is not None and observer.events.active_events == 0
    route = root.calls.router.routes[0]
    assert (route.event_charging, route.event_charging_mode) == ("orig", "reservation")
    settings = root.config.charging.ro_settings()
    assert (settings.sms_service_identifier, settings.sms_rating_group) == (7, 77)


def test_event_statistics_are_scraped() -> None:
    """/metrics carries the event counters next to the 14 session ones."""
    root = build_service(parse_config_text(CONFIG), MemoryReactorClock())
    assert root.charging is not None
    root.charging.stats.event_ccrs = 3
    root.charging.stats.billed_events = 2
    text = render(collect(Sources(root.calls, root.endpoint, root.diameter, root.charging)))
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    for stat in EVENT_STAT_NAMES:
        assert EVENT_METRICS[stat][0] in samples, stat
    assert samples["b2bua_event_ccrs_total"] == "3"
    assert samples["b2bua_billed_events_total"] == "2"


class Engine:
    """The engine as the controller drives it: records what each media change asks for."""

    def __init__(self) -> None:
        self.videos: list[bool] = []

    def call_answered(self, call_id: str) -> None:
        pass

    def media_changed(self, call_id: str, retarget: Any) -> None:
        self.videos.append(retarget(make_context()).video)


def controlled(invite_body: str) -> tuple[ChargingController, Engine, Any]:
    controller = ChargingController(cast(Any, None), RoSettings(), Clock())
    engine = Engine()
    controller.engine = cast(Any, engine)
    call = SimpleNamespace(id="c1", invite=invite(body=invite_body), answer_sdp=b"", data={})
    return controller, engine, call


def test_a_late_offer_answered_with_video_switches_at_the_answer() -> None:
    """INVITE without SDP, video in the 2xx: the call becomes video when answered."""
    controller, engine, call = controlled("")
    call.answer_sdp = SDP_VIDEO.encode()
    controller.call_answered(call)
    assert engine.videos == [True]


def test_an_early_offer_is_not_reconsidered_at_the_answer() -> None:
    """The INVITE's offer decided at the CCR-I; the answer does not change the group."""
    controller, engine, call = controlled(SDP_VIDEO)
    call.answer_sdp = SDP_AUDIO.encode()
    controller.call_answered(call)
    assert engine.videos == []


def test_mid_call_video_needs_offer_and_answer() -> None:
    """A re-INVITE's offer adds video (answer still audio: voice), its answer accepts it
    (video); the next offer removes it (voice)."""
    controller, engine, call = controlled(SDP_AUDIO)
    call.answer_sdp = SDP_AUDIO.encode()
    controller.call_answered(call)
    controller.media_changed(call, Side.A, SDP_VIDEO.encode())
    controller.media_changed(call, Side.B, SDP_VIDEO.encode())
    controller.media_changed(call, Side.A, SDP_AUDIO.encode())
    assert engine.videos == [False, True, False]


def kept_ccr_t() -> Any:
    """A CCR-Termination as the engine keeps one that no OCS took."""
    from b2bua.diameter.message import Message

    return Message.request(
        "Credit-Control",
        4,
        [
            ("Session-Id", "b2bua.test;1;2;3"),
            ("Origin-Host", "b2bua.test"),
            ("Origin-Realm", "test"),
            ("Destination-Realm", "test"),
            ("Auth-Application-Id", 4),
            ("CC-Request-Type", 3),
            ("CC-Request-Number", 1),
        ],
    )


def test_termination_retry_settings_reach_the_engine() -> None:
    """[charging] termination_retry_interval and _limit drive the resends of a kept CCR-T."""
    retry = "termination_retry_interval = 2.5\ntermination_retry_limit = 2\n"
    text = CONFIG.replace("[metrics]", retry + "[metrics]")
    reactor = MemoryReactorClock()
    root = build_service(parse_config_text(text), reactor)
    assert root.charging is not None
    root.charging.keep_termination("b2bua.test;1;2;3", "c1", kept_ccr_t())
    reactor.advance(2.4)
    assert root.charging.stats.final_ccrs == 0
    reactor.advance(0.1)  # 2.5 s: the first resend (no peer is open: it fails)
    assert root.charging.stats.final_ccrs == 1
    assert len(root.charging.pending_terminations) == 1
    reactor.advance(2.5)  # the second and last resend, then dropped
    assert root.charging.stats.final_ccrs == 2
    assert root.charging.pending_terminations == []
