"""Iterative on-policy rounds (`hadpo rounds`): an orchestration layer above the three wings, like the command
line. Round r describes the pair images with round r-1's model, judges, builds pairs, trains from round r-1's
model and evaluates (hadpo.rounds.driver); each stage is complete once its folder holds done.json
(hadpo.rounds.stages), so a killed chain continues where it stopped. docs/rounds.md has the loop, its options and
its outputs."""
