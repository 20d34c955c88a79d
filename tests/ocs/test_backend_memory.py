"""The memory backend: the contract, synchronous answers, and the accounts model it loads."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed

from b2bua.ocs.accounts import (
    Account,
    AccountExistsError,
    AccountsFileError,
    OcsBackend,
    account_document,
    load_accounts,
    normalise_subscriber,
    parse_accounts,
)
from b2bua.ocs.backend_memory import MemoryBackend
from b2bua.ocs.ledger import Ledger
from b2bua.ocs.rating import CreditPolicy, Rating
from tests.ocs.backend_contract import ALICE, VOICE, BackendContract, result_of, run_now

CONF_ACCOUNTS = Path(__file__).resolve().parents[2] / "conf" / "accounts.json"


class TestMemoryContract(BackendContract):
    """The shared contract against the memory backend."""

    def make_backend(
        self, *, rating: Rating, policy: CreditPolicy, ledger: Ledger
    ) -> Deferred[OcsBackend]:
        """A fresh memory backend."""
        return succeed(MemoryBackend(rating, policy, ledger))

    def run(self, test: Coroutine[Any, Any, None]) -> None:
        """Memory answers have all fired: the test runs to its end synchronously."""
        run_now(test)


def test_answers_are_synchronous() -> None:
    """Every method of the memory backend returns an already-fired Deferred."""
    backend = MemoryBackend()
    for deferred in (
        backend.provision([Account(ALICE, {"seconds": 10})]),
        backend.reserve(ALICE, "s1", 0, VOICE, requested=5, now=0),
        backend.update("s1", 1, VOICE, used=5, requested=5, now=5),
        backend.terminate("s1", 2, VOICE, used=5, now=10),
        backend.check_balance(ALICE, VOICE, now=10),
        backend.expire_stale(10),
    ):
        assert deferred.called


def test_create_existing_fails_the_deferred() -> None:
    """create_account of a present subscriber gives a failed Deferred, not an exception."""
    backend = MemoryBackend()
    result_of(backend.provision([Account(ALICE)]))
    deferred = backend.create_account(Account(ALICE))
    with pytest.raises(AccountExistsError):
        result_of(deferred)


def test_ledger_file_of_a_backend(tmp_path: Path) -> None:
    """A backend with a file ledger writes one readable line per answer."""
    ledger = Ledger(tmp_path / "ledger.jsonl")
    backend = MemoryBackend(ledger=ledger)
    result_of(backend.provision([Account(ALICE, {"seconds": 100})]))
    result_of(backend.reserve(ALICE, "s1", 0, VOICE, requested=10, now=0))
    result_of(backend.terminate("s1", 1, VOICE, used=7, now=7))
    ledger.close()
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    assert [json.loads(line)["request_type"] for line in lines] == ["INITIAL", "TERMINATE"]
    assert ledger.billed_seconds("15550100") == 7


# -- subscriber identities --


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("+15550100", "15550100"),
        ("15550100", "15550100"),
        ("+1 (555) 010-0", "15550100"),
        ("tel:+1-555-0100", "15550100"),
        ("TEL:+1.555.0100;phone-context=lab.example", "15550100"),
        ("<tel:+15550100>", "15550100"),
        ("sip:+15550100@ims.lab.example;user=phone", "15550100"),
        ("sip:+1-555-0100;npdi@ims.lab.example;user=phone", "15550100"),
        ("sip:+15550100@ims.lab.example", "sip:+15550100@ims.lab.example"),
        ("sip:alice@Lab.Example", "sip:alice@lab.example"),
        ("SIPS:alice@lab.example:5061;transport=tls?subject=x", "sip:alice@lab.example"),
        ("sip:Alice@lab.example", "sip:Alice@lab.example"),
        ("sip:alice@[2001:DB8::1]:5060", "sip:alice@[2001:db8::1]"),
        ("sip:lab.example", "sip:lab.example"),
        ("alice@lab.example", "sip:alice@lab.example"),
        ("  <sip:alice@lab.example>  ", "sip:alice@lab.example"),
        ("alice-private-id", "alice-private-id"),
        ("urn:service:sos", "urn:service:sos"),
    ],
)
def test_normalise_subscriber(raw: str, key: str) -> None:
    """Every spelling of one subscriber maps onto one account key."""
    assert normalise_subscriber(raw) == key


@pytest.mark.parametrize("raw", ["", "   ", "<>", "tel:", "tel:abc", "sip:alice@"])
def test_normalise_subscriber_rejects(raw: str) -> None:
    """Empty or unusable identities are refused."""
    with pytest.raises(ValueError):
        normalise_subscriber(raw)


def test_account_model_validates() -> None:
    """Accounts normalise their key, fill missing kinds with 0 and refuse bad amounts."""
    account = Account("tel:+15550100", {"seconds": 5}, {200: 1})
    assert (account.subscriber, account.seconds, account.events) == ("15550100", 5, 0)
    with pytest.raises(ValueError):
        Account(ALICE, {"seconds": -1})
    with pytest.raises(ValueError):
        Account(ALICE, {"octets": 1})
    with pytest.raises(ValueError):
        Account(ALICE, {}, {200: -2})


# -- the accounts file --


def test_shipped_accounts_file_loads_and_provisions() -> None:
    """conf/accounts.json is valid and provisions the lab's demo accounts."""
    accounts = load_accounts(CONF_ACCOUNTS)
    keys = {account.subscriber for account in accounts}
    assert {"15550100", "sip:alice@lab.example"} <= keys
    backend = MemoryBackend()
    assert result_of(backend.provision(accounts)) == len(accounts)
    worked_example = result_of(backend.get_account("tel:+1-555-0100"))
    assert worked_example is not None
    assert worked_example.balances["seconds"] == 75
    assert any(account.rates for account in accounts)
    assert any(account.events and not account.seconds for account in accounts)


def test_accounts_document_round_trip() -> None:
    """account_document writes what parse_accounts reads."""
    accounts = load_accounts(CONF_ACCOUNTS)
    assert parse_accounts(json.loads(json.dumps(account_document(accounts)))) == accounts


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.json"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[]", 'expected an object with an "accounts" list'),
        ('{"accounts": [], "extra": 1}', "unknown top-level keys ['extra']"),
        ('{"accounts": [1]}', "accounts[0]: expected an object"),
        ('{"accounts": [{"seconds": 1}]}', "accounts[0]: 'subscriber' must be a string"),
        (
            '{"accounts": [{"subscriber": "+1555", "seconds": -5}]}',
            "accounts[0] ('+1555'): 'seconds' must be a non-negative integer, got -5",
        ),
        (
            '{"accounts": [{"subscriber": "+1555", "events": 1.5}]}',
            "accounts[0] ('+1555'): 'events' must be a non-negative integer",
        ),
        (
            '{"accounts": [{"subscriber": "+1555", "seconds": true}]}',
            "'seconds' must be a non-negative integer, got True",
        ),
        (
            '{"accounts": [{"subscriber": "+1555", "minutes": 1}]}',
            "accounts[0] ('+1555'): unknown keys ['minutes']",
        ),
        (
            '{"accounts": [{"subscriber": "+1555", "rates": {"video": 2}}]}',
            "'rates' key 'video' is not a rating group number",
        ),
        (
            '{"accounts": [{"subscriber": "+1555", "rates": [2]}]}',
            "'rates' must be an object",
        ),
        (
            '{"accounts": [{"subscriber": ""}]}',
            "accounts[0] (''): empty subscriber identity",
        ),
        (
            '{"accounts": [{"subscriber": "+1555"}, {"subscriber": "tel:+1-555"}]}',
            "accounts[1] ('tel:+1-555') is the same subscriber '1555' as accounts[0]",
        ),
    ],
)
def test_accounts_file_errors_name_file_and_entry(
    tmp_path: Path, document: str, message: str
) -> None:
    """Each mistake is reported with the file name and the entry at fault."""
    path = _write(tmp_path, document)
    with pytest.raises(AccountsFileError) as caught:
        load_accounts(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_accounts_file_syntax_and_missing(tmp_path: Path) -> None:
    """Bad JSON names the line and column; a missing file says it cannot be read."""
    path = _write(tmp_path, '{"accounts": [\n  {"subscriber": "+1555",}\n]}')
    with pytest.raises(AccountsFileError, match=r"accounts\.json: line 2 column"):
        load_accounts(path)
    with pytest.raises(AccountsFileError, match=r"nope\.json: cannot read"):
        load_accounts(tmp_path / "nope.json")
