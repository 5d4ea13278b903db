"""basic_auth without sockets: the strict Authorization parser, bcrypt and argon2
verification, the verification cache (hits never await, failures never cached, LRU, TTL,
keyed), the decoy verification of unknown users, the bound on pending verifications, and
config errors. Requests are small stand-ins that record what the policy decided; the
sockets tests (tests/integration/test_basic_auth_sockets.py) run the real gateway."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import argon2
import bcrypt
import pytest

from fastgw import _core
from fastgw.policy import basic
from fastgw.policy.base import PolicyConfigError, ProvisionContext
from fastgw.policy.basic import BasicAuth, BasicAuthConfig, verify_password
from fastgw.policy.consumers import Consumer, ConsumerTable
from fastgw.policy.registry import PolicyRegistry

FAST_ARGON2 = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
ALICE_PASSWORD = "correct horse"
BOB_PASSWORD = "pässwörd"  # not ASCII: RFC 7617 charset="UTF-8"


def basic_value(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Refused:
    def __init__(self, code: str, challenge: str | None) -> None:
        self.code = code
        self.challenge = challenge


class StandIn:
    """What the policy reads of a request and the two calls it ends with."""

    def __init__(self, *authorization: str, authenticated: bool = False) -> None:
        self.headers = _core.Headers(
            [("Host", "gw.test"), ("User-Agent", "t"), ("Accept", "*/*")]
            + [("Authorization", value) for value in authorization]
        )
        self.authenticated = authenticated
        self.consumer: Any = None
        self.by: str | None = None

    def authenticate(self, consumer: Any, claims: Any, by: str, scope: Any) -> None:
        self.consumer, self.by = consumer, by

    def auth_failed(self, code: str, challenge: str | None, anonymous: Any, fallthrough: bool):
        return Refused(code, challenge)


@pytest.fixture(scope="module")
def table() -> ConsumerTable:
    consumers = ConsumerTable()
    alice = Consumer("alice", groups=("billing",))
    bob = Consumer("bob", id="u-2")
    alice_hash = bcrypt.hashpw(ALICE_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    consumers.basic["alice"] = (alice_hash, alice)
    consumers.basic["bob"] = (FAST_ARGON2.hash(BOB_PASSWORD), bob)
    for consumer in (alice, bob):
        consumers.by_name[consumer.name] = consumer
        consumers.by_id[consumer.id] = consumer
    return consumers


def make(table: ConsumerTable, **options: Any) -> BasicAuth:
    config = BasicAuthConfig(**{"realm": "orders", **options})
    return BasicAuth(config, ProvisionContext("r", (), "$.routes[0].policies[0]", None, table))


def run(policy: BasicAuth, request: StandIn) -> Any:
    return asyncio.run(policy.on_request(request))


def completes_without_awaiting(policy: BasicAuth, request: StandIn) -> tuple[bool, Any]:
    coroutine = policy.on_request(request)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return True, done.value
    coroutine.close()
    return False, None


def test_verify_password_with_bcrypt_and_argon2(table: ConsumerTable) -> None:
    alice_hash, _ = table.basic["alice"]
    bob_hash, _ = table.basic["bob"]
    assert verify_password(alice_hash, ALICE_PASSWORD.encode())
    assert not verify_password(alice_hash, b"correct horsE")
    assert verify_password(bob_hash, BOB_PASSWORD.encode())
    assert not verify_password(bob_hash, b"password")
    # bcrypt reads 72 bytes: a longer password is refused, not truncated into a match.
    long_hash = bcrypt.hashpw(b"a" * 72, bcrypt.gensalt(4)).decode()
    assert verify_password(long_hash, b"a" * 72)
    assert not verify_password(long_hash, b"a" * 73)


def test_the_default_costs_work() -> None:
    bcrypt_hash = bcrypt.hashpw(b"slow on purpose", bcrypt.gensalt()).decode()
    assert bcrypt_hash.startswith("$2b$12$")
    assert verify_password(bcrypt_hash, b"slow on purpose")
    argon2_hash = argon2.PasswordHasher().hash("slow on purpose")
    assert verify_password(argon2_hash, b"slow on purpose")
    assert not verify_password(argon2_hash, b"slow on purpose!")


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (basic_value("alice", "wrong"), "credentials_invalid"),
        (basic_value("nobody", ALICE_PASSWORD), "credentials_invalid"),
        ("Basic !!!!", "credentials_invalid"),
        ("Basic YWxpY2U6c2VjcmV0=", "credentials_invalid"),  # excess padding
        ("Basic YWxpY2U6c2VjcmV", "credentials_invalid"),  # missing padding
        ("Basic " + base64.b64encode(b"alice" + b"nocolon").decode(), "credentials_invalid"),
        ("Basic " + base64.b64encode(b"alice:\xff\xfe").decode(), "credentials_invalid"),
        ("Basic ", "credentials_invalid"),
        ("Basic", "credentials_invalid"),
        ("Bearer abc.def", "credentials_missing"),
        ("Digest username=alice", "credentials_missing"),
    ],
    ids=[
        "wrong-password",
        "unknown-user",
        "not-base64",
        "excess-padding",
        "missing-padding",
        "no-colon",
        "not-utf8",
        "empty",
        "scheme-only",
        "bearer",
        "digest",
    ],
)
def test_refusals_and_their_codes(table: ConsumerTable, value: str, code: str) -> None:
    result = run(make(table), StandIn(value))
    assert isinstance(result, Refused)
    assert result.code == code
    assert result.challenge == 'Basic realm="orders", charset="UTF-8"'


def test_no_authorization_and_two_of_them(table: ConsumerTable) -> None:
    assert run(make(table), StandIn()).code == "credentials_missing"
    two = StandIn(basic_value("alice", ALICE_PASSWORD), basic_value("bob", BOB_PASSWORD))
    assert run(make(table), two).code == "credentials_invalid"


def test_bcrypt_and_argon2_users_authenticate(table: ConsumerTable) -> None:
    policy = make(table)
    alice = StandIn(basic_value("alice", ALICE_PASSWORD))
    assert run(policy, alice) is None
    assert (alice.consumer.name, alice.by) == ("alice", "basic_auth")
    bob = StandIn(basic_value("bob", BOB_PASSWORD))
    assert run(policy, bob) is None
    assert bob.consumer.id == "u-2"
    # The scheme is case-insensitive (RFC 7235 2.1).
    shouting = StandIn(basic_value("alice", ALICE_PASSWORD).replace("Basic", "BASIC"))
    assert run(policy, shouting) is None


def test_an_earlier_policy_that_accepted_wins(table: ConsumerTable) -> None:
    request = StandIn(authenticated=True)
    assert run(make(table), request) is None
    assert request.consumer is None


def test_a_success_is_cached_and_a_hit_never_awaits(table: ConsumerTable) -> None:
    policy = make(table)
    value = basic_value("alice", ALICE_PASSWORD)
    assert run(policy, StandIn(value)) is None
    assert policy.verifications == 1
    request = StandIn(value)
    finished, result = completes_without_awaiting(policy, request)
    assert finished and result is None
    assert request.consumer.name == "alice"
    assert policy.verifications == 1


def test_the_cache_holds_no_password(table: ConsumerTable) -> None:
    policy = make(table)
    run(policy, StandIn(basic_value("alice", ALICE_PASSWORD)))
    [(key, (consumer, _))] = policy._cache.items()
    assert consumer.name == "alice"
    assert ALICE_PASSWORD.encode() not in key
    assert len(key) == 32
    # Keyed: another policy (another key) files the same credentials elsewhere.
    other = make(table)
    run(other, StandIn(basic_value("alice", ALICE_PASSWORD)))
    assert list(other._cache) != [key]


def test_failures_are_never_cached(table: ConsumerTable) -> None:
    policy = make(table)
    value = basic_value("alice", "wrong")
    for _ in range(3):
        assert run(policy, StandIn(value)).code == "credentials_invalid"
    assert policy.verifications == 3
    assert not policy._cache


def test_the_cache_is_a_bounded_lru(table: ConsumerTable) -> None:
    policy = make(table, cache_size=1)
    alice = basic_value("alice", ALICE_PASSWORD)
    bob = basic_value("bob", BOB_PASSWORD)
    for value in (alice, bob, alice):
        assert run(policy, StandIn(value)) is None
    assert policy.verifications == 3
    assert len(policy._cache) == 1
    off = make(table, cache_size=0)
    run(off, StandIn(alice))
    run(off, StandIn(alice))
    assert off.verifications == 2 and not off._cache


def test_a_cache_entry_expires_after_cache_ttl(table: ConsumerTable) -> None:
    policy = make(table, cache_ttl=0.2)
    value = basic_value("alice", ALICE_PASSWORD)
    run(policy, StandIn(value))
    assert completes_without_awaiting(policy, StandIn(value))[0]
    time.sleep(0.25)
    assert run(policy, StandIn(value)) is None
    assert policy.verifications == 2


def test_an_unknown_user_costs_a_verification_too(table: ConsumerTable) -> None:
    policy = make(table)
    assert policy._decoy is not None
    result = run(policy, StandIn(basic_value("mallory", "guess")))
    assert result.code == "credentials_invalid"
    assert policy.verifications == 1
    # The decoy is a configured hash: the right password of its user does not let an
    # unknown name in.
    decoy_user = next(u for u, (h, _) in table.basic.items() if h == policy._decoy)
    password = ALICE_PASSWORD if decoy_user == "alice" else BOB_PASSWORD
    assert run(policy, StandIn(basic_value("mallory", password))).code == "credentials_invalid"


def test_timing_of_known_and_unknown_users_is_alike() -> None:
    consumers = ConsumerTable()
    for name in ("u1", "u2", "u3"):
        consumers.basic[name] = (bcrypt.hashpw(b"pw", bcrypt.gensalt(8)).decode(), Consumer(name))
    policy = make(consumers, cache_size=0)

    def median_seconds(value: str) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            run(policy, StandIn(value))
            times.append(time.perf_counter() - start)
        return sorted(times)[2]

    known = median_seconds(basic_value("u1", "wrong"))
    unknown = median_seconds(basic_value("nobody", "wrong"))
    print(f"bcrypt cost 8: known user {known * 1e3:.1f} ms, unknown user {unknown * 1e3:.1f} ms")
    # Both pay one cost-8 bcrypt (milliseconds); an unknown user answered at once would
    # take microseconds.
    assert unknown > known / 3


def test_concurrent_requests_with_the_same_credentials_share_one_verification(
    table: ConsumerTable,
) -> None:
    policy = make(table)
    value = basic_value("alice", ALICE_PASSWORD)

    async def burst() -> list[Any]:
        return await asyncio.gather(*(policy.on_request(StandIn(value)) for _ in range(10)))

    assert asyncio.run(burst()) == [None] * 10
    assert policy.verifications == 1


def test_beyond_max_pending_the_answer_is_auth_unavailable(table: ConsumerTable) -> None:
    policy = make(table, max_pending=2, cache_size=0)

    async def burst() -> list[Any]:
        requests = [StandIn(basic_value("alice", f"wrong-{n}")) for n in range(6)]
        return await asyncio.gather(*(policy.on_request(r) for r in requests))

    codes = [result.code for result in asyncio.run(burst())]
    assert codes.count("credentials_invalid") == 2
    assert codes.count("auth_unavailable") == 4
    assert policy.overloaded == 4
    assert policy._pending == 0


def test_a_warm_cache_hit_costs_microseconds(table: ConsumerTable) -> None:
    policy = make(table)
    value = basic_value("alice", ALICE_PASSWORD)
    run(policy, StandIn(value))
    requests = [StandIn(value) for _ in range(20_000)]
    start = time.perf_counter()
    for request in requests:
        coroutine = policy.on_request(request)
        try:
            coroutine.send(None)
        except StopIteration:
            pass
    per_call = (time.perf_counter() - start) / len(requests)
    print(f"basic_auth warm-cache on_request: {per_call * 1e6:.2f} us per call")
    assert all(r.consumer is not None for r in requests)
    # Generous: a verification at any cost is thousands of times this.
    assert per_call < 200e-6


def test_the_hash_threads_run_apart_from_the_loop(table: ConsumerTable) -> None:
    policy = make(table)
    seen: list[str] = []
    original = basic.verify_password

    def spy(password_hash: str, password: bytes) -> bool:
        import threading

        seen.append(threading.current_thread().name)
        return original(password_hash, password)

    basic.verify_password = spy
    try:
        run(policy, StandIn(basic_value("alice", ALICE_PASSWORD)))
    finally:
        basic.verify_password = original
    assert seen and seen[0].startswith("fastgw-passwords")
    assert 1 <= basic.VERIFY_THREADS <= 4


def test_hide_credentials_removes_authorization_upstream(table: ConsumerTable) -> None:
    from fastgw.policy.compiled import CompileContext

    context = CompileContext((), {}, None)
    hidden = make(table, hide_credentials=True).compile_core(context)
    assert [(op.op, op.name) for op in hidden.request_ops] == [("remove", b"authorization")]
    assert len(hidden.steps) == 1
    assert make(table).compile_core(context).request_ops == ()


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("$2b$12$tooshort", "not a well-formed bcrypt hash"),
        ("$argon2id$v=19$m=65536,t=3$garbage", "not a well-formed argon2 hash"),
    ],
)
def test_a_malformed_stored_hash_fails_provisioning(stored: str, message: str) -> None:
    consumers = ConsumerTable()
    consumers.basic["carol"] = (stored, Consumer("carol"))
    with pytest.raises(PolicyConfigError) as caught:
        make(consumers)
    assert message in caught.value.message
    assert "carol" in caught.value.message
    assert stored not in caught.value.message


def test_config_options_are_checked() -> None:
    registry = PolicyRegistry.default()
    assert registry.resolve("basic_auth") is BasicAuth
    import msgspec

    from fastgw.config.schema import decode_hook

    def decode(options: dict[str, Any]) -> Any:
        return msgspec.convert(options, BasicAuthConfig, dec_hook=decode_hook)

    assert decode({"cache_ttl": "5m"}).cache_ttl == 300.0
    for bad in ({"realm": 'a"b'}, {"cache_size": -1}, {"max_pending": 0}, {"nope": 1}):
        with pytest.raises(msgspec.ValidationError):
            decode(bad)


def test_the_repr_shows_no_hash(table: ConsumerTable) -> None:
    policy = make(table)
    text = repr(policy)
    assert "orders" in text and "2 users" in text
    for password_hash, _ in table.basic.values():
        assert password_hash not in text
