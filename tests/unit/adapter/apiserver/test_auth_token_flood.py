"""TokenReview amplification (issue 12, finding 5).

Every distinct invalid bearer token used to cost one TokenReview against the kube-apiserver, and
the failures shared one bounded cache with the successes, so a flood of junk tokens also evicted
the valid identities (each of which then cost a TokenReview again). Now: malformed and oversized
tokens are refused without calling out, failures live in their own small short-lived cache, and
reviews of unknown tokens are rate-limited (token bucket; beyond it 429 with Retry-After).
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapter.apiserver.auth import AlwaysAllow, Authenticator, AuthnConfig, TokenReviewer
from adapter.apiserver.server import build_app
from adapter.errors import AdapterError, Unauthorized
from tests.support.adapter_fakes import sample_provider

GOOD = "good-token-for-the-prometheus-scraper"


class CountingKube:
    def __init__(self) -> None:
        self.reviews = 0

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        raise AssertionError

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path.endswith("/tokenreviews")
        self.reviews += 1
        if body["spec"]["token"] == GOOD:
            return {"status": {"authenticated": True, "user": {"username": "scraper"}}}
        return {"status": {"authenticated": False}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reviewer(kube: CountingKube, clock: Clock | None = None, **kw: Any) -> TokenReviewer:
    """A TokenReviewer on a fake clock when this version of it accepts one."""
    params = inspect.signature(TokenReviewer).parameters
    if clock is not None and "clock" in params:
        kw["clock"] = clock
    return TokenReviewer(kube, **{k: v for k, v in kw.items() if k in params})


async def _flood(authn: Authenticator, n: int) -> tuple[int, int]:
    """n distinct well-formed bad tokens: (answered 401, answered something else like 429)."""
    unauthorized = other = 0
    for i in range(n):
        try:
            await authn.authenticate({"Authorization": f"Bearer junk-{i:06d}"}, None)
        except Unauthorized:
            unauthorized += 1
        except AdapterError:
            other += 1
    return unauthorized, other


async def test_flood_of_bad_tokens_is_rate_limited() -> None:
    kube, clock = CountingKube(), Clock()
    tokens = reviewer(kube, clock)
    authn = Authenticator(lambda: AuthnConfig(), tokens=tokens)
    unauthorized, limited = await _flood(authn, 10_000)
    # the clock does not move: only the bucket's burst may be reviewed
    assert kube.reviews <= 100, f"{kube.reviews} TokenReviews for 10000 bad tokens"
    assert unauthorized == kube.reviews and limited == 10_000 - kube.reviews
    clock.now += 1.0  # the bucket refills at its rate
    before = kube.reviews
    await _flood(authn, 1_000)
    assert 0 < kube.reviews - before <= 50


async def test_flood_does_not_evict_valid_identities() -> None:
    kube, clock = CountingKube(), Clock()
    # no rate limit here: this is about the caches
    tokens = reviewer(kube, clock, review_rate=1e9, review_burst=1e9)
    authn = Authenticator(lambda: AuthnConfig(), tokens=tokens)
    assert (await authn.authenticate({"Authorization": f"Bearer {GOOD}"}, None)).name == "scraper"
    assert kube.reviews == 1
    await _flood(authn, 5_000)
    reviews = kube.reviews
    assert (await authn.authenticate({"Authorization": f"Bearer {GOOD}"}, None)).name == "scraper"
    assert kube.reviews == reviews, "the valid token's cached identity was evicted by the flood"


@pytest.mark.parametrize(
    "token",
    ["x" * 8193, "has space", "tab\there", "ctl\x01char", "nul\x00", "ünïcode", "line\nbreak"],
)
async def test_malformed_or_oversized_tokens_never_reviewed(token: str) -> None:
    kube = CountingKube()
    authn = Authenticator(lambda: AuthnConfig(), tokens=reviewer(kube))
    with pytest.raises(Unauthorized):
        await authn.authenticate({"Authorization": f"Bearer {token}"}, None)
    assert kube.reviews == 0


async def test_token_at_the_size_limit_is_reviewed() -> None:
    kube = CountingKube()
    with pytest.raises(Unauthorized):
        await Authenticator(lambda: AuthnConfig(), tokens=reviewer(kube)).authenticate(
            {"Authorization": "Bearer " + "x" * 8192}, None
        )
    assert kube.reviews == 1


async def test_failures_cached_briefly_in_their_own_cache() -> None:
    kube, clock = CountingKube(), Clock()
    authn = Authenticator(lambda: AuthnConfig(), tokens=reviewer(kube, clock))
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await authn.authenticate({"Authorization": "Bearer same-bad-token"}, None)
    assert kube.reviews == 1
    clock.now += 60
    with pytest.raises(Unauthorized):
        await authn.authenticate({"Authorization": "Bearer same-bad-token"}, None)
    assert kube.reviews == 2


async def test_http_429_with_retry_after() -> None:
    kube = CountingKube()
    app = build_app(
        sample_provider(),
        authenticator=Authenticator(
            lambda: AuthnConfig(), tokens=reviewer(kube, review_rate=1, review_burst=2)
        ),
        authorizer=AlwaysAllow(),
        peer_cert=lambda r: None,
    )
    async with TestClient(TestServer(app)) as client:
        codes = []
        for i in range(5):
            resp = await client.get("/apis", headers={"Authorization": f"Bearer junk-{i}"})
            codes.append(resp.status)
            if resp.status == 429:
                body = await resp.json()
                assert body["kind"] == "Status" and body["reason"] == "TooManyRequests"
                assert int(resp.headers["Retry-After"]) >= 1
        assert codes[:2] == [401, 401] and 429 in codes[2:]
        # a cached valid identity is not limited
        kube2_good = await client.get("/apis", headers={"Authorization": f"Bearer {GOOD}"})
        assert kube2_good.status in (200, 429)
    assert kube.reviews <= 3


def test_serve_flags_default_and_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from adapter.cli import UsageError, build_parser, validate_serve

    (tmp_path / "c").write_text("x")
    (tmp_path / "k").write_text("x")
    base = ["serve", "--provider", "static", "--tls-cert-file", str(tmp_path / "c"),
            "--tls-private-key-file", str(tmp_path / "k")]
    args = build_parser().parse_args(base)
    assert args.token_review_rate == 20.0 and args.token_review_burst == 100
    validate_serve(args)
    for bad in (["--token-review-rate", "0"], ["--token-review-burst", "0"]):
        with pytest.raises(UsageError, match="token-review"):
            validate_serve(build_parser().parse_args([*base, *bad]))


async def test_a_flood_does_not_starve_the_recheck_of_a_recently_valid_token() -> None:
    """Seen in hostile_bench: a valid token's cached identity expired (10 s) while a junk-token flood
    had spent the review budget, so the client got 429s. Tokens that passed a review recently are
    re-checked on a budget of their own (still a real TokenReview: a revoked token fails it)."""
    kube, clock = CountingKube(), Clock()
    authn = Authenticator(lambda: AuthnConfig(), tokens=reviewer(kube, clock))
    assert (await authn.authenticate({"Authorization": f"Bearer {GOOD}"}, None)).name == "scraper"
    clock.now += 11  # its cached identity has expired
    _, limited = await _flood(authn, 500)
    assert limited > 0, "the flood should have spent the unknown-token budget"
    reviews = kube.reviews
    assert (await authn.authenticate({"Authorization": f"Bearer {GOOD}"}, None)).name == "scraper"
    assert kube.reviews == reviews + 1, "the recheck is a real TokenReview"
    # an unknown token is still limited
    with pytest.raises(AdapterError) as err:
        await authn.authenticate({"Authorization": "Bearer never-seen-before"}, None)
    assert not isinstance(err.value, Unauthorized)
