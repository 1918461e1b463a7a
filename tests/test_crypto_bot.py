"""A crypto strategy end to end: `trading-bot run --strategy crypto_trend --broker ccxt:binance` as a real process on
the wall clock against the loopback Binance (ccxt unmodified, Binance's wire format), through the order manager.

The venue's filters are Binance's: quantity step 0.00001, minimum notional 5 USDT, price tick 0.01. The account is
small (1 000 USDT) so positions are fractions of a coin and many daily re-sizings are below the minimum notional.
Oracles: the strategy run here on the same candles (what the bot must have decided, bar by bar), the venue's book
(what it did), and the filters (nothing the venue would refuse is ever sent). Daily candles run through weekends:
the bot decides on Saturdays and Sundays (a 24/7 clock), which an exchange-session calendar would skip.
"""
import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, select

from fakes.binance_trading_server import RollingBinance
from fakes.exchange_server import make_candles
from trading.crypto.strategies import CryptoTrend
from trading.store.schema import equity as equity_t
from trading.store.schema import orders as orders_t
from trading.strategies.base import MarketData

PAIRS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
PARAMS = {"lookback": 5, "vol_window": 5, "target_vol": 0.3}
WARM, TRADE = 12, 10  # candles visible at the first fetch, then one more per loop
CASH, STEP, MIN_NOTIONAL = Decimal("1000"), Decimal("0.00001"), Decimal("5")
_today = pd.Timestamp.now(tz="UTC").normalize()
_start_ms = int((_today - pd.Timedelta(days=WARM + TRADE)).value // 1_000_000)
CANDLES = {s: make_candles(_start_ms, WARM + TRADE, seed=20 + i, price=p) for i, (s, p) in enumerate(zip(PAIRS, [40_000.0, 2_000.0, 40.0]))}


def bot(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "trading-bot"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADING_", "APCA_"))}
    env.update(TRADING_CCXT_API_KEY="crypto-bot-key-1", TRADING_CCXT_SECRET="crypto-bot-secret-value-2")
    return subprocess.run([str(exe) if exe.exists() else shutil.which("trading-bot"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def market_data(n_visible: int) -> MarketData:
    rows = [dict(ts_event=pd.Timestamp(c[0], unit="ms", tz="UTC"), symbol=s, open=c[1], high=c[2], low=c[3], close=c[4], volume=c[5])
            for s, cs in CANDLES.items() for c in cs[:n_visible]]
    return MarketData.from_bars(pd.DataFrame(rows))


def test_crypto_trend_trades_on_the_fake_binance_through_the_order_manager(tmp_path):
    srv = RollingBinance(CANDLES, WARM, cash=str(CASH), step=str(STEP), min_qty=str(STEP), min_notional=str(MIN_NOTIONAL)).start()
    try:
        db, name = tmp_path / "bots.db", "crypto-trend-binance"
        r = bot(["run", "--strategy", "crypto_trend", "--params", json.dumps(PARAMS), "--broker", "ccxt:binance",
                 "--symbols", ",".join(PAIRS), "--cash", str(CASH), "--fee-bps", "10", "--iterations", str(TRADE), "--interval", "0",
                 "--lookback-days", str(WARM + TRADE + 5), "--request-timeout", "5", "--trading-url", srv.url,
                 "--db", f"sqlite:///{db}", "--state-dir", str(tmp_path / "bots"), "--name", name], tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert srv.fetches == TRADE
        eng = create_engine(f"sqlite:///{db}")
        with eng.connect() as conn:
            journal = conn.execute(select(orders_t.c.client_order_id, orders_t.c.symbol, orders_t.c.qty, orders_t.c.status)
                                   .where(orders_t.c.run_id == name)).all()
            marks = [pd.Timestamp(t, tz="UTC") if pd.Timestamp(t).tz is None else pd.Timestamp(t)
                     for (t,) in conn.execute(select(equity_t.c.ts_event).where(equity_t.c.run_id == name)).all()]
        eng.dispose()
    finally:
        srv.stop()
    venue = srv.venue
    # what the venue booked is what the journal says, nothing refused by the venue's filters, nothing sent twice
    assert len(journal) >= 3 and {c for c, *_ in journal} == set(venue.orders)
    assert all(status == "filled" for *_, status in journal), journal
    for cid, o in venue.orders.items():
        qty = Decimal(o.qty)
        assert qty == (qty / STEP).to_integral_value() * STEP  # on the lot grid
        assert qty != qty.to_integral_value()  # fractional coins: 1 000 USDT never buys a whole BTC or ETH
    fills = venue.fills()
    assert all(Decimal(str(f.qty)) * Decimal(str(f.price)) >= MIN_NOTIONAL for f in fills)  # never below the minimum notional
    # a 24/7 clock: one mark per daily bar, weekends included; decisions (in the client ids) on weekend bars too
    bars = [pd.Timestamp(c[0], unit="ms", tz="UTC") for c in CANDLES["BTC/USDT"][WARM - 1:WARM + TRADE - 1]]
    assert sorted(marks) == bars and any(b.dayofweek >= 5 for b in bars)
    decided = set(pd.to_datetime([c.rsplit("-", 2)[1] for c, *_ in journal], format="%y%m%d%H%M%S", utc=True))
    assert decided <= set(bars) and len(decided) >= 2
    # the oracle: the strategy on the candles the bot saw at its last loop; the book holds its weights (to the lot grid,
    # the minimum notional and fees)
    data = market_data(WARM + TRADE - 1)
    w = CryptoTrend(**PARAMS).target_weights(data).iloc[-1]
    prices = data.close.iloc[-1]
    held = venue.positions()
    value = float(venue.equity())
    for s in PAIRS:
        got = float(held.get(s, 0)) * prices[s]
        assert abs(got - w[s] * value) <= float(MIN_NOTIONAL) + 0.003 * value, (s, got, w[s] * value)
    assert (w > 0).any() and np.isfinite(w).all(), "the trend strategy should hold something at the end of this path"


def test_the_paper_bot_replays_a_ccxt_snapshot_on_a_24_7_clock(tmp_path):
    "`trading-data snapshot --source ccxt` (loopback Binance) then `trading-bot run --broker paper --snapshot`: every daily bar, weekends too."
    from fakes.exchange_server import ExchangeServer
    from trading.data.snapshot import write_source_snapshot
    t0 = int(pd.Timestamp("2024-03-01", tz="UTC").value // 1_000_000)
    candles = {s: make_candles(t0, 40, seed=30 + i, price=p) for i, (s, p) in enumerate(zip(PAIRS[:2], [40_000.0, 2_000.0]))}
    with ExchangeServer(candles) as srv:
        write_source_snapshot(tmp_path / "data", "ccxt", PAIRS[:2], "2024-03-01", "2024-04-09", exchange="binance", base_url=srv.url)
    common = ["--db", f"sqlite:///{tmp_path / 'bots.db'}", "--state-dir", str(tmp_path / "bots"), "--name", "paper-crypto"]
    r = bot(["run", "--strategy", "crypto_trend", "--params", json.dumps(PARAMS), "--symbols", ",".join(PAIRS[:2]), "--cash", "1000",
             "--snapshot", str(tmp_path / "data"), "--dataset", "ccxt_binance", "--bars", "30", *common], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bars 2024-03-11..2024-04-09" in r.stdout  # 10 warm-up bars, then 30 daily bars through four weekends
    eng = create_engine(f"sqlite:///{tmp_path / 'bots.db'}")
    with eng.connect() as conn:
        cids = [c for (c,) in conn.execute(select(orders_t.c.client_order_id).where(orders_t.c.run_id == "paper-crypto")).all()]
        qtys = [Decimal(q) for (q,) in conn.execute(select(orders_t.c.qty).where(orders_t.c.run_id == "paper-crypto")).all()]
    eng.dispose()
    decided = pd.to_datetime([c.rsplit("-", 2)[1] for c in cids], format="%y%m%d%H%M%S", utc=True)
    assert (decided.dayofweek >= 5).any()  # an exchange calendar has no Saturday or Sunday bar to decide on
    assert qtys and all(q != q.to_integral_value() for q in qtys)  # fractions of a coin
    bad = bot(["run", "--strategy", "crypto_trend", "--symbols", "DOGE/USDT", "--snapshot", str(tmp_path / "data"), "--dataset", "ccxt_binance",
               *common[:4], "--name", "paper-bad"], tmp_path)
    assert bad.returncode == 2 and "DOGE/USDT" in bad.stderr and "ccxt_binance" in bad.stderr
