"""A paper bot that keeps trading in a thread, with its metrics exporter: what the monitoring tests watch.

Its broker is the paper broker behind the network layer's own request budget and circuit breakers
(trading.net.http.RateLimits / Breakers), so the rate-limit and breaker metrics come from the real classes."""
import threading
import time
from decimal import Decimal

import numpy as np
import pandas as pd

from trading.live.manager import OrderManager
from trading.live.paper import PaperBroker, PaperVenue
from trading.live.runner import BotRunner, bars_at
from trading.monitor.exporter import BotExporter
from trading.monitor.metrics import BotMetrics
from trading.net.http import Breakers, RateLimits
from trading.risk.limits import RiskLimits
from trading.store.engine import make_engine
from trading.strategies.base import MarketData
from trading.strategies.rules import SMACrossover


class NetPaperBroker(PaperBroker):
    "The paper broker with a request budget and an order-entry circuit breaker in front of it."
    def __init__(self, venue):
        super().__init__(venue)
        self.limits, self.breakers = RateLimits("paper", 6000), Breakers("paper")

    def submit(self, order):
        self.limits.acquire("orders")
        return self.breakers["orders"].call(lambda: PaperBroker.submit(self, order))

    def net_state(self):
        return dict(breakers=self.breakers.states(), limits=self.limits.state())


def synthetic_data(n=400, symbols=("AAA", "BBB", "CCC"), seed=0):
    idx = pd.date_range("2023-01-02", periods=n, freq="D", tz="UTC")
    rng = np.random.default_rng(seed)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, len(symbols))), axis=0)), idx, list(symbols))
    return MarketData(close)


class PaperBotThread:
    "A paper bot replaying one bar every `bar_seconds` in a thread, its exporter on a loopback port."
    def __init__(self, tmp, name="e2e", bar_seconds=0.1, textfile_dir=None, publish=None):
        self.data = synthetic_data()
        self.state_dir = tmp / "bots"; self.state_dir.mkdir(exist_ok=True)
        self.db = f"sqlite:///{tmp}/{name}.db"
        self.venue = PaperVenue(cash=Decimal(100_000), state_path=self.state_dir / f"{name}.venue.json")
        self.om = OrderManager(make_engine(self.db, durable=True), NetPaperBroker(self.venue), name, clock=lambda: self.venue.now)
        self.runner = BotRunner(self.om, SMACrossover(fast=3, slow=8), limits=RiskLimits(max_gross=1.0, max_drawdown=0.5), max_data_age="3D")
        self.metrics = BotMetrics(self.om, self.runner, limits=RiskLimits(var_budget=0.05, var_lookback=20, max_drawdown=0.5))
        self.metrics.instrument_broker()
        self.exporter = BotExporter(self.metrics, port=0, textfile_dir=textfile_dir)
        self.bar_seconds, self.publish = bar_seconds, publish
        self._stop = threading.Event()
        self.bars_done = 0
        self.error = None

    def start(self):
        start = 30
        self.venue.on_bar(self.data.index[start - 1], bars_at(self.data, start - 1))
        self.om.start({"strategy": "sma_crossover"}, strategy="SMACrossover")
        self.exporter.start()
        self._thread = threading.Thread(target=self._loop, args=(start,), daemon=True)
        self._thread.start()
        return self

    def _loop(self, start):
        try:
            for i in range(start, len(self.data.index)):
                if self._stop.is_set(): return
                t = self.data.index[i]
                self.venue.on_bar(t, bars_at(self.data, i))
                self.runner.manager.sync()
                self.runner.step(self.data.until(t))
                self.runner.mark(t, self.data.close.iloc[i])
                self.metrics.observe_bar(self.data.until(t))
                if self.publish: self.publish(self, t)
                self.bars_done += 1
                time.sleep(self.bar_seconds)
        except Exception as e:  # surfaced by the test
            self.error = e

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        self.exporter.stop()
