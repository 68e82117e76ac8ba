"""The analyzer's single-purpose parts; `edge_xemo.analyzer.Analyzer` builds and wires them.

`feed` (input checks and the input queues), `perception` (the perception thread: stages, windows, latency,
drop reports), `explainer` (which windows are explained, the reasoning thread, cancellation), `delivery`
(the delivery thread and `events()`), `reporting` (event payloads, and sending them with the counters),
`source_runner` (a thread per source, feeding the analyzer's public input side), `threads` (started once,
joined against a deadline). Window order in VIDEO mode is `core.outbox.Outbox`'s job.
"""
