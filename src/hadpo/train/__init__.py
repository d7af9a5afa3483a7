"""The training wing: the HA-DPO objective (DPO + auxiliary SFT) on `transformers.Trainer`.

`loss` (pure math), `logps` (response log-probs), `data` (pairs, mix, rewrites), `collate` (collators), `config` (typed
config), `reference` (precomputed reference log-probs), `trainer` (HADPOTrainer), `run` (set-up and saving).
"""
