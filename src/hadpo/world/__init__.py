"""The scene world, on top of the toolkit and optional: synthetic scenes with declared data imperfections
(config, drawing, scenes, data, truth), the tiny LLaVA built and pretrained from scratch on them (tiny, pretrain
with pretrain_config, batches, probes), its eval sets, the demo and its report, and the `hadpo world` /
`hadpo demo` verbs (cli). It uses the toolkit only through its public functions and files; nothing in the toolkit
imports it (docs/world.md, docs/architecture.md).
"""
