"""`bik-bridge check-config --ping` against the fake bitbybit: each refusal of the key says what to fix."""
from __future__ import annotations

import pytest

from bridge.ops.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE

pytestmark = pytest.mark.integration


@pytest.fixture
def ping(check_config_ping, fake_bbb):
    """Run `check-config --ping` on a bitbybit config for the fake; returns (exit code, stdout, stderr)."""

    def run(**changes) -> tuple[int, str, str]:
        bitbybit = {"api_key": fake_bbb.api_key, "api_base_url": fake_bbb.api_base_url, **changes}
        return check_config_ping({"platform": "bitbybit", "bitbybit": bitbybit})

    return run


def test_ping_ok_reads_once(ping, fake_bbb):
    code, out, _ = ping()

    assert code == EXIT_OK
    assert "ping ok: bitbybit at" in out and "orders readable" in out
    assert [r.method for r in fake_bbb.requests] == ["GET"]
    assert fake_bbb.api_key not in out


@pytest.mark.parametrize(("refuse", "changes", "code", "fix"), [
    (None, {"api_key": "bbb_live_revoked"}, "INVALID_API_KEY", "Settings > Developer"),
    (None, {"auth_header": "x-bitbybit-key"}, "MISSING_API_KEY", "bitbybit.auth_header"),
    (lambda fake: fake.set_scopes(), {}, "INSUFFICIENT_SCOPE", "orders READ and orders WRITE scopes"),
    (lambda fake: fake.set_ip_allowed(False), {}, "IP_NOT_ALLOWED", "IP allowlist"),
])
def test_a_refused_key_names_the_cause_and_the_fix(ping, fake_bbb, refuse, changes, code, fix):
    if refuse:
        refuse(fake_bbb)

    exit_code, out, err = ping(**changes)

    assert exit_code == EXIT_FAILED
    assert "ping failed" in err and code in err
    assert "fix: " in err and fix in err
    assert "bbb_live_revoked" not in out + err


def test_a_wrong_base_url_says_so(ping, fake_bbb):
    code, _, err = ping(api_base_url=f"{fake_bbb.url}/customer/api/open/v1")

    assert code == EXIT_FAILED
    assert "404" in err and "check bitbybit.api_base_url" in err


def test_a_broken_variant_map_is_a_config_error(ping, tmp_path):
    broken = tmp_path / "variants.csv"
    broken.write_text("1,a\n1,b\n")

    code, _, err = ping(variant_map=str(broken))

    assert code == EXIT_USAGE
    assert "bitbybit.variant_map" in err and "mapped twice" in err
