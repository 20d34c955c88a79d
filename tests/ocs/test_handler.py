"""The OCS's Diameter application: CCRs in, CCAs out, on the memory backend.

Every request type and result path of `CreditControlHandler`, the worked example of the
charging reference message by message, retransmissions, malformed requests, and the RAR /
ASR builders. The memory backend answers at once, so `result_of` takes each answer.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail

from b2bua.diameter.avp import Avp, decode_avps
from b2bua.diameter.dictionary import (
    APP_BASE,
    APP_CREDIT_CONTROL,
    CC_EVENT_REQUEST,
    CC_INITIAL_REQUEST,
    CC_TERMINATION_REQUEST,
    CC_UPDATE_REQUEST,
)
from b2bua.diameter.message import Message, check_command, decode
from b2bua.ocs.accounts import Account
from b2bua.ocs.backend_memory import MemoryBackend
from b2bua.ocs.handler import (
    CURRENCY_NONE,
    CreditControlHandler,
    OpenSession,
    SessionRegistry,
    build_asr,
    build_rar,
    subscription_ids,
)
from b2bua.ocs.ledger import Ledger
from b2bua.ocs.rating import CreditPolicy, CreditResult, FinalUnitStyle
from tests.ocs.backend_contract import result_of

OCS_HOST, OCS_REALM = "ocs.lab.example", "lab.example"
CLIENT_HOST, CLIENT_REALM = "b2bua.lab.example", "lab.example"
ALICE = "+15550100"  # the 75 s subscriber of the worked example
ALICE_KEY = "15550100"
BOB = "sip:bob@lab.example"
VOICE, VIDEO, SMS = 100, 200, 300


def make_handler(
    style: FinalUnitStyle = "fui", *, seconds: int = 75, events: int = 3
) -> tuple[CreditControlHandler, MemoryBackend, Ledger]:
    ledger = Ledger(keep=True)
    backend = MemoryBackend(policy=CreditPolicy(final_unit_style=style), ledger=ledger)
    result_of(
        backend.provision(
            [
                Account(ALICE, {"seconds": seconds, "events": events}),
                Account(BOB, {"seconds": 600, "events": 0}),
            ]
        )
    )
    handler = CreditControlHandler(backend, origin_host=OCS_HOST, origin_realm=OCS_REALM)
    return handler, backend, ledger


def mscc(
    rating_group: int | None = VOICE,
    *,
    requested: int | None = None,
    used: int | None = None,
    unit: str = "CC-Time",
    empty_rsu: bool = False,
) -> tuple[str, list[Any]]:
    body: list[Any] = []
    if requested is not None:
        body.append(("Requested-Service-Unit", [(unit, requested)]))
    elif empty_rsu:
        body.append(("Requested-Service-Unit", []))
    if used is not None:
        body.append(("Used-Service-Unit", [(unit, used)]))
    body.append(("Service-Identifier", 1000))
    if rating_group is not None:
        body.append(("Rating-Group", rating_group))
    return ("Multiple-Services-Credit-Control", body)


def ccr(
    request_type: int,
    number: int,
    *services: tuple[str, list[Any]],
    session: str = "call-1",
    subscriber: str | None = ALICE,
    subscription_type: int = 0,
    extra: list[Any] | None = None,
    action: int | None = None,
    retransmit: bool = False,
    hop_by_hop: int = 7,
) -> Message:
    avps: list[Any] = [
        ("Session-Id", session),
        ("Origin-Host", CLIENT_HOST),
        ("Origin-Realm", CLIENT_REALM),
        ("Destination-Realm", OCS_REALM),
        ("Auth-Application-Id", APP_CREDIT_CONTROL),
        ("Service-Context-Id", "32260@3gpp.org"),
        ("CC-Request-Type", request_type),
        ("CC-Request-Number", number),
    ]
    if subscriber is not None:
        avps.append(
            (
                "Subscription-Id",
                [("Subscription-Id-Type", subscription_type), ("Subscription-Id-Data", subscriber)],
            )
        )
    if action is not None:
        avps.append(("Requested-Action", action))
    avps += extra or []
    if services:
        avps.append(("Multiple-Services-Indicator", 1))
        avps += list(services)
    return Message.request(
        "Credit-Control",
        avps=avps,
        hop_by_hop=hop_by_hop,
        end_to_end=hop_by_hop,
        retransmit=retransmit,
    )


def answer(
    handler: CreditControlHandler, request: Message, now: float = 0.0, *, check: bool = True
) -> Message:
    """The handler's answer, through the wire: encoded, decoded, dictionary-checked.

    `check` False for answers that cannot pass (the request lacked what they must echo).
    """
    wire = decode(result_of(handler.handle(request, now)).encode())
    if check:
        check_command(wire)
    return wire


def services(message: Message) -> list[Avp]:
    return message.find_all("Multiple-Services-Credit-Control")


def granted(message: Message, unit: str = "CC-Time") -> int | None:
    value = message.get_path("Multiple-Services-Credit-Control", "Granted-Service-Unit", unit)
    return None if value is None else int(value)


def failed_avps(message: Message) -> list[Avp]:
    failed = message.find("Failed-AVP")
    assert failed is not None, message
    return decode_avps(failed.data, 0, len(failed.data), (1, [64]))


def balance(backend: MemoryBackend, subscriber: str = ALICE) -> tuple[int, int]:
    snapshot = result_of(backend.get_account(subscriber))
    assert snapshot is not None
    return snapshot.balances["seconds"], snapshot.reserved["seconds"]


# -- session charging (SCUR) --


def test_initial_grant_answer_carries_every_required_avp() -> None:
    """CCR-I: 30 s granted in an MSCC with Rating-Group, Validity-Time and Result-Code."""
    handler, backend, _ = make_handler()
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    assert cca.command_code == 272 and not cca.is_request and cca.hop_by_hop == 7
    assert cca.app_id == APP_CREDIT_CONTROL
    assert cca.session_id == "call-1"
    assert cca.result_code == 2001
    assert (cca.origin_host, cca.origin_realm) == (OCS_HOST, OCS_REALM)
    assert cca.get("Auth-Application-Id") == APP_CREDIT_CONTROL
    assert (cca.get("CC-Request-Type"), cca.get("CC-Request-Number")) == (1, 0)
    (service,) = services(cca)
    assert service.get("Rating-Group") == VOICE
    assert service.get("Service-Identifier") == 1000
    assert service.get("Result-Code") == 2001
    assert service.get("Validity-Time") == 600
    assert granted(cca) == 30
    assert service.find("Final-Unit-Indication") is None
    assert balance(backend) == (75, 30)
    session = handler.registry.get("call-1")
    assert session is not None
    assert (session.subscriber, session.peer_host, session.rating_groups) == (
        ALICE_KEY,
        CLIENT_HOST,
        {VOICE},
    )


def run_worked_example(style: FinalUnitStyle) -> tuple[list[Message], CreditControlHandler, Ledger]:
    handler, backend, ledger = make_handler(style)
    steps: list[tuple[float, Message, int | None, int]] = [
        (0, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30), session="call-1"), 30, 2001),
        (30, ccr(CC_UPDATE_REQUEST, 1, mscc(requested=30, used=30), session="call-1"), 30, 2001),
        (40, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30), session="call-2"), 15, 2001),
        (50, ccr(CC_TERMINATION_REQUEST, 2, mscc(used=20), session="call-1"), None, 2001),
        (55, ccr(CC_UPDATE_REQUEST, 1, mscc(requested=30, used=15), session="call-2"), 10, 2001),
    ]
    if style == "fui":
        steps.append(
            (65, ccr(CC_TERMINATION_REQUEST, 2, mscc(used=10), session="call-2"), None, 2001)
        )
    else:
        steps += [
            (
                65,
                ccr(CC_UPDATE_REQUEST, 2, mscc(requested=30, used=10), session="call-2"),
                None,
                4012,
            ),
            (65, ccr(CC_TERMINATION_REQUEST, 3, mscc(used=0), session="call-2"), None, 2001),
        ]
    answers = []
    for now, request, grant, code in steps:
        cca = answer(handler, request, now)
        assert (cca.result_code, granted(cca)) == (code, grant), (now, cca)
        answers.append(cca)
    assert balance(backend) == (0, 0)
    return answers, handler, ledger


def test_worked_example_with_final_unit_indication() -> None:
    """The reference's table: the 10 s grant at t = 55 is final; 75 s billed, nothing held."""
    answers, handler, ledger = run_worked_example("fui")
    final = answers[4].find_path("Multiple-Services-Credit-Control", "Final-Unit-Indication")
    assert final is not None and final.get("Final-Unit-Action") == 0
    assert all(
        cca.find_path("Multiple-Services-Credit-Control", "Final-Unit-Indication") is None
        for cca in answers[:4]
    )
    assert ledger.billed_seconds(ALICE_KEY) == 75
    assert len(handler.registry) == 0


def test_worked_example_with_4012() -> None:
    """Style 4012: the grant at t = 55 is plain, the next CCR-U is 4012; still 75 s billed."""
    answers, handler, ledger = run_worked_example("4012")
    assert answers[4].find_path("Multiple-Services-Credit-Control", "Final-Unit-Indication") is None
    refused = answers[5]
    (service,) = services(refused)
    assert service.get("Result-Code") == 4012
    assert service.find("Granted-Service-Unit") is None
    assert ledger.billed_seconds(ALICE_KEY) == 75
    assert len(handler.registry) == 0


def test_initial_with_no_credit_is_4012_and_opens_nothing() -> None:
    """CCR-I for a subscriber without credit: 4012 at both levels, no session recorded."""
    handler, _, _ = make_handler(seconds=0)
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    assert cca.result_code == 4012
    assert services(cca)[0].get("Result-Code") == 4012
    assert "call-1" not in handler.registry


def test_unknown_subscriber_is_5030_at_command_level() -> None:
    """An identity without an account: DIAMETER_USER_UNKNOWN, no MSCC, no session."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30), subscriber="+15559999"))
    assert cca.result_code == 5030
    assert services(cca) == []
    assert (cca.get("CC-Request-Type"), cca.get("CC-Request-Number")) == (1, 0)
    assert len(handler.registry) == 0


def test_unknown_rating_group_is_5031_with_failed_avp() -> None:
    """A rating group without a tariff: 5031 in the MSCC and at command level, Failed-AVP."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(999, requested=30)))
    assert cca.result_code == 5031
    assert services(cca)[0].get("Result-Code") == 5031
    (inner,) = failed_avps(cca)
    assert inner.name == "Multiple-Services-Credit-Control"
    assert inner.get("Rating-Group") == 999


def test_one_unratable_service_of_two_is_reported_alone() -> None:
    """Voice granted, rating group 999 refused: command-level success, Failed-AVP for 999."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30), mscc(999, requested=5)))
    assert cca.result_code == 2001
    codes = {s.get("Rating-Group"): s.get("Result-Code") for s in services(cca)}
    assert codes == {VOICE: 2001, 999: 5031}
    (inner,) = failed_avps(cca)
    assert inner.get("Rating-Group") == 999


def test_single_service_request_without_rating_input_gets_an_example_rating_group() -> None:
    """No MSCC and an unratable default group: Failed-AVP holds an example Rating-Group."""
    handler, backend, _ = make_handler()
    handler.default_rating_group = 999
    request = ccr(CC_INITIAL_REQUEST, 0, extra=[("Requested-Service-Unit", [("CC-Time", 30)])])
    cca = answer(handler, request)
    assert cca.result_code == 5031
    (inner,) = failed_avps(cca)
    assert inner.name == "Rating-Group"
    assert balance(backend) == (75, 0)


def test_single_service_request_is_answered_at_the_top_level() -> None:
    """A CCR without MSCC: top-level Granted-Service-Unit, Validity-Time and FUI."""
    handler, _, _ = make_handler(seconds=20)
    request = ccr(CC_INITIAL_REQUEST, 0, extra=[("Requested-Service-Unit", [("CC-Time", 30)])])
    cca = answer(handler, request)
    assert cca.result_code == 2001
    assert services(cca) == []
    assert cca.get_path("Granted-Service-Unit", "CC-Time") == 20
    assert cca.get("Validity-Time") == 600
    assert cca.get_path("Final-Unit-Indication", "Final-Unit-Action") == 0
    names = [avp.name for avp in cca.avps]
    assert names.index("Granted-Service-Unit") < names.index("Final-Unit-Indication")
    assert names.index("Final-Unit-Indication") < names.index("Validity-Time")


def test_update_of_an_unknown_session_is_5002() -> None:
    """CCR-U for a session the OCS never opened: DIAMETER_UNKNOWN_SESSION_ID."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_UPDATE_REQUEST, 1, mscc(requested=30, used=10), session="x"))
    assert cca.result_code == 5002
    assert services(cca) == []


def test_request_number_of_another_type_is_5012() -> None:
    """A CCR-U reusing the CCR-I's number is refused with 5012; the session stays open."""
    handler, backend, _ = make_handler()
    answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    cca = answer(handler, ccr(CC_UPDATE_REQUEST, 0, mscc(requested=30, used=10)))
    assert cca.result_code == 5012
    assert balance(backend) == (75, 30)
    assert "call-1" in handler.registry


def test_empty_requested_units_take_the_tariff_default_and_absent_ones_ask_nothing() -> None:
    """An empty RSU reserves the tariff's 30 s; a CCR-U without RSU only reports."""
    handler, backend, _ = make_handler()
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(empty_rsu=True)))
    assert granted(cca) == 30
    cca = answer(handler, ccr(CC_UPDATE_REQUEST, 1, mscc(used=10)), now=10)
    assert (cca.result_code, granted(cca)) == (2001, None)
    assert balance(backend) == (65, 0)
    session = handler.registry.get("call-1")
    assert session is not None and session.rating_groups == set()


def test_termination_releases_rating_groups_the_request_did_not_name() -> None:
    """CCR-T naming voice only still releases the video reservation: the session closes."""
    handler, backend, ledger = make_handler(seconds=600)
    answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30), mscc(VIDEO, requested=30)))
    assert balance(backend) == (600, 90)
    cca = answer(handler, ccr(CC_TERMINATION_REQUEST, 1, mscc(used=12)), now=12)
    assert cca.result_code == 2001
    assert [s.get("Rating-Group") for s in services(cca)] == [VOICE]
    assert balance(backend) == (588, 0)
    assert "call-1" not in handler.registry
    terminations = [e for e in ledger.read() if e.request_type == "TERMINATE"]
    assert {(e.rating_group, e.debited) for e in terminations} == {(VOICE, 12), (VIDEO, 0)}


def test_termination_without_services_terminates_the_default_rating_group() -> None:
    """A CCR-T with a top-level Used-Service-Unit reports on the default rating group."""
    handler, backend, _ = make_handler()
    answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    request = ccr(CC_TERMINATION_REQUEST, 1, extra=[("Used-Service-Unit", [("CC-Time", 7)])])
    assert answer(handler, request, now=7).result_code == 2001
    assert balance(backend) == (68, 0)


def test_several_used_service_units_are_added_up() -> None:
    """Two Used-Service-Unit AVPs in one MSCC (a tariff change) are one report."""
    handler, backend, _ = make_handler()
    answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    service = (
        "Multiple-Services-Credit-Control",
        [
            ("Used-Service-Unit", [("CC-Time", 8), ("Tariff-Change-Usage", 0)]),
            ("Used-Service-Unit", [("CC-Time", 4), ("Tariff-Change-Usage", 1)]),
            ("Rating-Group", VOICE),
        ],
    )
    answer(handler, ccr(CC_TERMINATION_REQUEST, 1, service), now=12)
    assert balance(backend) == (63, 0)


# -- retransmissions --


def test_retransmitted_initial_is_answered_again_without_a_second_reservation() -> None:
    """The same CCR-I with the T flag gets the same grant; nothing more is reserved."""
    handler, backend, ledger = make_handler()
    first = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    again = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30), retransmit=True))
    assert again.avps == first.avps
    assert balance(backend) == (75, 30)
    assert [e.duplicate for e in ledger.read()] == [False, True]


def test_retransmitted_update_does_not_debit_twice() -> None:
    """A CCR-U answered once and sent again debits its used units once."""
    handler, backend, ledger = make_handler()
    answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    update = ccr(CC_UPDATE_REQUEST, 1, mscc(requested=30, used=30))
    first = answer(handler, update, now=30)
    again = answer(handler, update, now=31)
    assert granted(again) == granted(first) == 30
    assert balance(backend) == (45, 30)
    assert ledger.billed_seconds(ALICE_KEY) == 30


# -- subscribers --


def test_subscription_ids_prefer_e164_then_sip_uri() -> None:
    """Subscription-Id order: E.164 first, then SIP URI, then the rest as sent."""
    request = ccr(
        CC_INITIAL_REQUEST,
        0,
        subscriber=None,
        extra=[
            ("Subscription-Id", [("Subscription-Id-Type", 4), ("Subscription-Id-Data", "p")]),
            ("Subscription-Id", [("Subscription-Id-Type", 2), ("Subscription-Id-Data", BOB)]),
            ("Subscription-Id", [("Subscription-Id-Type", 0), ("Subscription-Id-Data", ALICE)]),
        ],
    )
    assert subscription_ids(request) == [ALICE, BOB, "p"]


def test_the_first_identity_with_an_account_is_charged() -> None:
    """An E.164 number without an account and a SIP URI with one: the SIP URI pays."""
    handler, backend, _ = make_handler()
    request = ccr(
        CC_INITIAL_REQUEST,
        0,
        mscc(requested=30),
        subscriber=None,
        extra=[
            ("Subscription-Id", [("Subscription-Id-Type", 0), ("Subscription-Id-Data", "+19990")]),
            ("Subscription-Id", [("Subscription-Id-Type", 2), ("Subscription-Id-Data", BOB)]),
        ],
    )
    assert answer(handler, request).result_code == 2001
    snapshot = result_of(backend.get_account(BOB))
    assert snapshot is not None and snapshot.reserved["seconds"] == 30


def test_sip_uri_subscription_is_normalised() -> None:
    """END_USER_SIP_URI data in another spelling reaches the same account."""
    handler, _, _ = make_handler()
    request = ccr(
        CC_INITIAL_REQUEST,
        0,
        mscc(requested=30),
        subscriber="sip:bob@LAB.example:5060;transport=tcp",
        subscription_type=2,
    )
    assert answer(handler, request).result_code == 2001
    session = handler.registry.get("call-1")
    assert session is not None and session.subscriber == BOB


# -- events (IEC, ECUR) --


def test_direct_debiting_an_sms() -> None:
    """IEC: one event debited at once, granted in CC-Service-Specific-Units."""
    handler, backend, ledger = make_handler(events=1)
    request = ccr(
        CC_EVENT_REQUEST,
        0,
        mscc(SMS, requested=1, unit="CC-Service-Specific-Units"),
        action=0,
        session="sms-1",
    )
    cca = answer(handler, request)
    assert (cca.result_code, cca.get("CC-Request-Type")) == (2001, 4)
    assert granted(cca, "CC-Service-Specific-Units") == 1
    assert ledger.billed_events(ALICE_KEY) == 1
    assert "sms-1" not in handler.registry
    again = ccr(CC_EVENT_REQUEST, 0, mscc(SMS), action=0, session="sms-2")
    refused = answer(handler, again)
    assert refused.result_code == 4012
    snapshot = result_of(backend.get_account(ALICE))
    assert snapshot is not None and snapshot.balances["events"] == 0


def test_refund_credits_the_units_back() -> None:
    """REFUND_ACCOUNT returns the units named in Requested-Service-Unit."""
    handler, backend, _ = make_handler(events=1)
    request = ccr(
        CC_EVENT_REQUEST,
        0,
        mscc(SMS, requested=2, unit="CC-Service-Specific-Units"),
        action=1,
        session="refund-1",
    )
    assert answer(handler, request).result_code == 2001
    snapshot = result_of(backend.get_account(ALICE))
    assert snapshot is not None and snapshot.balances["events"] == 3


def test_refund_without_units_is_5005() -> None:
    """A refund naming no units at all is DIAMETER_MISSING_AVP (Requested-Service-Unit)."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_EVENT_REQUEST, 0, mscc(SMS), action=1, session="r"))
    assert cca.result_code == 5005
    (inner,) = failed_avps(cca)
    assert inner.name == "Requested-Service-Unit"


@pytest.mark.parametrize(("units", "expected"), [(75, 0), (76, 1)])
def test_check_balance(units: int, expected: int) -> None:
    """CHECK_BALANCE answers Check-Balance-Result ENOUGH_CREDIT (0) or NO_CREDIT (1)."""
    handler, backend, _ = make_handler()
    request = ccr(CC_EVENT_REQUEST, 0, mscc(requested=units), action=2, session="cb")
    cca = answer(handler, request)
    assert (cca.result_code, cca.get("Check-Balance-Result")) == (2001, expected)
    assert balance(backend) == (75, 0)


def test_check_balance_of_an_unknown_subscriber_is_5030() -> None:
    """CHECK_BALANCE for nobody: 5030 and no Check-Balance-Result."""
    handler, _, _ = make_handler()
    request = ccr(CC_EVENT_REQUEST, 0, mscc(), action=2, subscriber="+1999", session="cb")
    cca = answer(handler, request)
    assert cca.result_code == 5030 and cca.find("Check-Balance-Result") is None


def test_price_enquiry_answers_cost_information() -> None:
    """PRICE_ENQUIRY: 30 s of video at rate 2 cost 60 credit seconds, no currency."""
    handler, backend, _ = make_handler()
    request = ccr(CC_EVENT_REQUEST, 0, mscc(VIDEO, requested=30), action=3, session="pe")
    cca = answer(handler, request)
    assert cca.result_code == 2001
    assert cca.get_path("Cost-Information", "Unit-Value", "Value-Digits") == 60
    assert cca.get_path("Cost-Information", "Unit-Value", "Exponent") == 0
    assert cca.get_path("Cost-Information", "Currency-Code") == CURRENCY_NONE
    assert cca.get_path("Cost-Information", "Cost-Unit") == "credit seconds"
    assert balance(backend) == (75, 0)


def test_price_enquiry_of_an_unknown_rating_group_is_5031_with_failed_avp() -> None:
    """PRICE_ENQUIRY on a rating group without a tariff: 5031 and Failed-AVP."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_EVENT_REQUEST, 0, mscc(999), action=3, session="pe"))
    assert cca.result_code == 5031
    assert failed_avps(cca)[0].get("Rating-Group") == 999


def test_event_without_requested_action_is_5005() -> None:
    """An EVENT request must say what it wants: 5005 with an example Requested-Action."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_EVENT_REQUEST, 0, mscc(SMS), session="e"))
    assert cca.result_code == 5005
    assert failed_avps(cca)[0].name == "Requested-Action"
    assert (cca.get("CC-Request-Type"), cca.get("CC-Request-Number")) == (4, 0)


def test_event_charging_with_unit_reservation() -> None:
    """ECUR: CCR-I reserves one event, CCR-T debits the event delivered."""
    handler, backend, ledger = make_handler(events=2)
    unit = "CC-Service-Specific-Units"
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(SMS, requested=1, unit=unit)))
    assert granted(cca, unit) == 1
    snapshot = result_of(backend.get_account(ALICE))
    assert snapshot is not None and snapshot.reserved["events"] == 1
    cca = answer(handler, ccr(CC_TERMINATION_REQUEST, 1, mscc(SMS, used=1, unit=unit)))
    assert cca.result_code == 2001
    snapshot = result_of(backend.get_account(ALICE))
    assert snapshot is not None
    assert (snapshot.balances["events"], snapshot.reserved["events"]) == (1, 0)
    assert ledger.billed_events(ALICE_KEY) == 1


def test_grant_is_in_the_unit_of_the_tariff_when_none_was_asked() -> None:
    """An SMS reservation without units is granted in CC-Service-Specific-Units."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(SMS)))
    assert granted(cca, "CC-Service-Specific-Units") == 1
    assert granted(cca) is None


# -- malformed and unsupported --


def test_missing_request_number_gets_the_rfc_6733_error_answer() -> None:
    """A CCR without CC-Request-Number: 5005, Failed-AVP naming it, types echoed."""
    handler, _, _ = make_handler()
    request = ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30))
    request.avps = [a for a in request.avps if a.name != "CC-Request-Number"]
    cca = answer(handler, request, check=False)
    assert cca.result_code == 5005 and not cca.is_error
    assert failed_avps(cca)[0].name == "CC-Request-Number"
    assert len(handler.registry) == 0


def test_missing_subscription_id_is_5005() -> None:
    """A CCR-I naming no subscriber: DIAMETER_MISSING_AVP with an example Subscription-Id."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30), subscriber=None))
    assert cca.result_code == 5005
    (example,) = failed_avps(cca)
    assert (example.name, example.get("Subscription-Id-Type")) == ("Subscription-Id", 0)


def test_wrong_application_is_a_protocol_error() -> None:
    """A CCR under the base application id: 3007 with the E bit."""
    handler, _, _ = make_handler()
    request = ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30))
    request.app_id = APP_BASE
    cca = answer(handler, request, check=False)
    assert (cca.result_code, cca.is_error) == (3007, True)


def test_other_commands_are_unsupported() -> None:
    """A Session-Termination-Request is not served: 3001 with the E bit."""
    handler, _, _ = make_handler()
    request = Message.request(
        "Session-Termination",
        APP_CREDIT_CONTROL,
        [
            ("Session-Id", "call-1"),
            ("Origin-Host", CLIENT_HOST),
            ("Origin-Realm", CLIENT_REALM),
            ("Destination-Realm", OCS_REALM),
            ("Auth-Application-Id", APP_CREDIT_CONTROL),
            ("Termination-Cause", 1),
        ],
        hop_by_hop=3,
        end_to_end=3,
    )
    cca = answer(handler, request)
    assert (cca.result_code, cca.is_error, cca.command_code) == (3001, True, 275)


def test_answers_are_refused() -> None:
    """The handler only takes requests."""
    handler, _, _ = make_handler()
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    with pytest.raises(ValueError, match="requests"):
        handler.handle(cca, 0)


class _BrokenBackend(MemoryBackend):
    def reserve(self, *args: Any, **kwargs: Any) -> Deferred[CreditResult]:
        return fail(ConnectionError("redis is gone"))


def test_backend_failure_is_too_busy() -> None:
    """A failing backend is answered 3004 DIAMETER_TOO_BUSY (the client tries elsewhere)."""
    backend = _BrokenBackend()
    result_of(backend.provision([Account(ALICE, {"seconds": 75})]))
    handler = CreditControlHandler(backend, origin_host=OCS_HOST, origin_realm=OCS_REALM)
    cca = answer(handler, ccr(CC_INITIAL_REQUEST, 0, mscc(requested=30)))
    assert (cca.result_code, cca.is_error) == (3004, True)
    assert len(handler.registry) == 0


# -- RAR, ASR, registry --


def test_rar_and_asr_are_valid_requests_to_the_client() -> None:
    """build_rar / build_asr: Destination-Host of the client, AUTHORIZE_ONLY, app 4."""
    session = OpenSession("call-1", ALICE_KEY, CLIENT_HOST, CLIENT_REALM, 0, 0, {VOICE})
    for build, code in ((build_rar, 258), (build_asr, 274)):
        request = decode(
            build(
                session,
                origin_host=OCS_HOST,
                origin_realm=OCS_REALM,
                hop_by_hop=5,
                end_to_end=6,
                origin_state_id=9,
            ).encode()
        )
        check_command(request)
        assert (request.command_code, request.app_id, request.is_request) == (code, 4, True)
        assert request.get("Destination-Host") == CLIENT_HOST
        assert request.get("Destination-Realm") == CLIENT_REALM
        assert request.get("Auth-Application-Id") == APP_CREDIT_CONTROL
        assert request.session_id == "call-1"
    rar = build_rar(
        session, origin_host=OCS_HOST, origin_realm=OCS_REALM, hop_by_hop=1, end_to_end=1
    )
    assert rar.get("Re-Auth-Request-Type") == 0


def test_registry_finds_sessions_by_subscriber_peer_and_age() -> None:
    """The registry answers by any spelling of the subscriber, by client, and prunes."""
    registry = SessionRegistry()
    registry.open("a", ALICE_KEY, "B2BUA.lab.example", CLIENT_REALM, 1)
    registry.open("b", ALICE_KEY, "other.lab.example", CLIENT_REALM, 2)
    registry.open("c", "sip:bob@lab.example", CLIENT_HOST, CLIENT_REALM, 3)
    assert [s.session_id for s in registry.of_subscriber("tel:+1-555-0100")] == ["a", "b"]
    assert [s.session_id for s in registry.of_peer(CLIENT_HOST)] == ["a", "c"]
    assert registry.of_subscriber("") == []
    assert [s.session_id for s in registry.prune(older_than=2.5)] == ["a", "b"]
    assert [s.session_id for s in registry] == ["c"]
    assert registry.close("c") is not None and registry.close("c") is None
