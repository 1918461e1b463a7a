"""alpaca-py, unmodified, against a loopback server speaking Alpaca's options wire formats (no internet)."""
import numpy as np
import pandas as pd
import pytest

from fakes.alpaca_options_server import AlpacaOptionsServer, contract_wire
from fakes.alpaca_server import make_bars
from trading.core.errors import SourceUnavailableError, UnknownSymbolError
from trading.core.instruments import OptionContract
from trading.core.settings import Settings
from trading.options.alpaca import AlpacaOptions
from trading.options.pricing import bsm_greeks, bsm_price, implied_vol

KEY, SECRET = "PKOPTLOOP42", "options-loopback-secret-77"
SPOT, R, Q, AS_OF = 500.0, 0.05, 0.013, pd.Timestamp("2024-05-20T20:00:00Z")
EXPIRIES = ["2024-06-21", "2024-07-19"]
STRIKES = [480.0, 490.0, 500.0, 510.0, 520.0]


def occ(exp, right, k):
    return OptionContract(underlying="SPY", expiry=pd.Timestamp(exp).date(), strike=k, right=right).compact_symbol


CONTRACTS = [contract_wire(occ(e, r, k), "SPY", e, r, k) for e in EXPIRIES for r in "CP" for k in STRIKES]
IV = {c["symbol"]: 0.14 + 0.002 * (500 - float(c["strike_price"])) / 10 for c in CONTRACTS}  # a gentle skew


def snapshot(sym):
    c = OptionContract.from_occ(sym)
    T = (pd.Timestamp(c.expiry, tz="UTC") - AS_OF).total_seconds() / (365 * 86400)
    px = float(bsm_price(c.right, SPOT, float(c.strike), T, IV[sym], R, Q))
    g = bsm_greeks(c.right, SPOT, float(c.strike), T, IV[sym], R, Q)
    quote = {"t": "2024-05-20T19:59:59.5Z", "ax": "C", "ap": px + 0.05, "as": 10, "bx": "C", "bp": px - 0.05, "bs": 12, "c": "A"}
    return {"latestQuote": quote, "latestTrade": {"t": "2024-05-20T19:59:58Z", "x": "C", "p": round(px, 2), "s": 1, "c": "I"},
            "impliedVolatility": IV[sym], "greeks": {"delta": float(g["delta"]), "gamma": float(g["gamma"]), "vega": float(g["vega"]) / 100,
                                                      "theta": float(g["theta"]) / 365, "rho": float(g["rho"]) / 100}}


DAYS = [pd.Timestamp(d) + pd.Timedelta("4h") for d in ["2024-05-13", "2024-05-14", "2024-05-15", "2024-05-16", "2024-05-17"]]
BARS = {occ("2024-06-21", "C", 500.0): make_bars(DAYS, seed=7, price=9.0), occ("2024-06-21", "P", 490.0): make_bars(DAYS, seed=8, price=6.0)}


@pytest.fixture(scope="module")
def srv():
    s = AlpacaOptionsServer(CONTRACTS, BARS, {c["symbol"]: snapshot(c["symbol"]) for c in CONTRACTS}, page_size=3, keys=(KEY, SECRET)).start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _clean(srv):
    srv.reset()


def api(srv, key=KEY, secret=SECRET):
    return AlpacaOptions(Settings(_env_file=None, APCA_API_KEY_ID=key, APCA_API_SECRET_KEY=secret), data_url=srv.url, trading_url=srv.url)


def test_contracts_follow_pages_and_filters(srv):
    got = api(srv).contracts("SPY", expiry_from="2024-06-01", expiry_to="2024-06-30", right="C", strike_min=490)
    hits = srv.hits("/v2/options/contracts")
    assert hits[0]["underlying_symbols"] == "SPY" and hits[0]["type"] == "call" and float(hits[0]["strike_price_gte"]) == 490
    assert len(hits) == 2 and "page_token" not in hits[0] and hits[1]["page_token"]  # 4 contracts, 3 per page
    assert got["symbol"].tolist() == [occ("2024-06-21", "C", k) for k in STRIKES[1:]]
    assert got["strike"].tolist() == STRIKES[1:] and set(got["right"]) == {"C"} and set(got["multiplier"]) == {100.0}
    assert (got["expiry"] == pd.Timestamp("2024-06-21")).all()


def test_all_contracts_of_an_underlying(srv):
    got = api(srv).contracts("SPY", page_size=7)
    assert sorted(got["symbol"]) == sorted(c["symbol"] for c in CONTRACTS)
    hits = srv.hits("/v2/options/contracts")
    assert {h["limit"] for h in hits} == {"7"} and len(hits) == 7  # asked 7 per page; the server caps pages at 3: 20 contracts


def test_bars_match_the_wire(srv):
    syms = sorted(BARS)
    got = api(srv).bars(syms, "2024-05-13", "2024-05-18")
    assert len(srv.hits("/v1beta1/options/bars")) == 4  # 10 bars, 3 per page
    for s in syms:
        g = got[got["symbol"] == s]
        assert g["close"].tolist() == [b["c"] for b in BARS[s]]
        assert g["ts_event"].tolist() == [pd.Timestamp(b["t"]) for b in BARS[s]]


def test_snapshot_mid_implies_the_served_volatility(srv):
    syms = [c["symbol"] for c in CONTRACTS]
    snap = api(srv).snapshots(syms).set_index("symbol")
    assert sorted(snap.index) == sorted(syms)
    for s in syms:
        c = OptionContract.from_occ(s)
        T = (pd.Timestamp(c.expiry, tz="UTC") - AS_OF).total_seconds() / (365 * 86400)
        iv = implied_vol(snap.loc[s, "mid"], c.right, SPOT, float(c.strike), T, R, Q)
        assert abs(iv - snap.loc[s, "implied_volatility"]) < 1e-8
        assert abs(snap.loc[s, "delta"] - float(bsm_greeks(c.right, SPOT, float(c.strike), T, IV[s], R, Q)["delta"])) < 1e-12
    assert np.isclose(snap["ask"] - snap["bid"], 0.1).all()


def test_unknown_symbol_and_bad_keys_are_typed(srv):
    with pytest.raises(UnknownSymbolError):
        api(srv).snapshots([occ("2024-06-21", "C", 505.0)])
    with pytest.raises(SourceUnavailableError) as e:
        api(srv, secret="wrong-secret-value-123").contracts("SPY")
    assert "403" in str(e.value) and "wrong-secret-value-123" not in str(e.value)
    srv.fault("/v1beta1/options/bars", status=500)
    with pytest.raises(SourceUnavailableError):
        api(srv).bars(sorted(BARS), "2024-05-13", "2024-05-18")
