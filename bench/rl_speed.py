"""RL speed: the trading environment's steps/s alone (random actions), SB3 DQN training steps/s on it (one torch
thread, the `rl` stage's settings), the numpy policy's decisions/s, and what that means for a training grid.

Data: the S&P 500 index closes of the pinned snapshot (1990-2022). Timings are the best of `repeat` warm runs on
this machine (2 cores; other work on the machine slows every number alike, so ratios are the comparable part).
The grid estimate is runs x steps / (SB3 steps per CPU-second x workers): one free core per worker.
Prints a table and writes bench/results/rl_speed.json. Usage: python bench/rl_speed.py [--sb3-steps 5000]
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import yaml

OUT = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parents[1]


def best_of(fn, repeat=3, clock=time.perf_counter):
    times = []
    for _ in range(repeat):
        t = clock(); fn(); times.append(clock() - t)
    return min(times)


def cpu_and_wall(fn, repeat=3):
    "(best wall seconds, best CPU seconds of this process): on a busy machine the CPU time is what a free core would take."
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time(); fn(); walls.append(time.perf_counter() - t); cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-steps", type=int, default=50_000)
    p.add_argument("--sb3-steps", type=int, default=5_000)
    a = p.parse_args()
    import torch
    from stable_baselines3 import DQN
    from trading.data.snapshot import load_snapshot
    from trading.ml.rl.env import TradingEnv
    from trading.ml.rl.policy import DQNPolicy, greedy_positions
    from trading.ml.rl.train import DQNSettings
    torch.set_num_threads(1)
    bars = load_snapshot(ROOT / "data").bars("sp500_index")
    close = bars.set_index("ts_event")["close"].astype(float).rename_axis(None)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["rl"]
    s = DQNSettings(**params["dqn"])
    env = TradingEnv(close, reward=s.reward, episode_length=s.episode_length, fee_rate=params["fee_rate"], slippage=params["slippage"])
    actions = np.random.default_rng(0).integers(0, env.action_space.n, a.env_steps)

    def env_only():
        env.reset(seed=0)
        for x in actions:
            if env.step(x)[2]: env.reset()
    env_rate = a.env_steps / best_of(env_only)

    def sb3():
        m = DQN("MlpPolicy", env, seed=0, device="cpu", learning_rate=s.learning_rate, buffer_size=s.buffer_size, learning_starts=s.learning_starts * a.sb3_steps // s.total_timesteps,  # the stage's share of warm-up steps
               
                batch_size=s.batch_size, gamma=s.gamma, train_freq=s.train_freq, target_update_interval=s.target_update_interval,
                exploration_fraction=s.exploration_fraction, exploration_final_eps=s.exploration_final_eps, policy_kwargs={"net_arch": list(s.net_arch)})
        m.learn(a.sb3_steps)
    wall, cpu = cpu_and_wall(sb3, 2)
    sb3_rate, sb3_cpu_rate = a.sb3_steps / wall, a.sb3_steps / cpu

    pol = DQNPolicy(seed=0)
    policy_rate = len(close) / best_of(lambda: greedy_positions(pol.net, close))

    runs = len(params["assets"]) * len(params["seeds"]) * params["n_folds"]
    workers = params["n_workers"]
    grid_s = runs * s.total_timesteps / (sb3_cpu_rate * workers)  # one free core per worker
    issue_s = 5 * 200_000 / (sb3_cpu_rate * 2)
    res = {"cores": os.cpu_count(), "env_steps_per_s": env_rate, "sb3_dqn_steps_per_s": sb3_rate, "sb3_dqn_steps_per_cpu_s": sb3_cpu_rate, "env_share_of_sb3_step": sb3_rate / env_rate,
           "policy_decisions_per_s": policy_rate, "grid_runs": runs, "grid_steps_per_run": s.total_timesteps, "grid_workers": workers,
           "grid_estimate_s": grid_s, "issue_grid_5x200k_on_2_workers_estimate_s": issue_s}
    OUT.mkdir(exist_ok=True)
    (OUT / "rl_speed.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"environment alone      {env_rate:>12,.0f} steps/s")
    print(f"SB3 DQN training       {sb3_rate:>12,.0f} steps/s wall, {sb3_cpu_rate:,.0f} per CPU-second (the environment is {sb3_rate / env_rate:.1%} of a training step)")
    print(f"numpy policy           {policy_rate:>12,.0f} decisions/s")
    print(f"params.yaml grid       {runs} runs x {s.total_timesteps:,} steps on {workers} workers: ~{grid_s / 60:.1f} min of training (one free core each)")
    print(f"issue's grid           5 seeds x 200,000 steps on 2 workers: ~{issue_s / 60:.1f} min")


if __name__ == "__main__":
    main()
