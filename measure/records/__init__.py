"""Pure data: the typed questions, samples and per-question records (records) and the typed results a
measured run writes and reads back -- reports, comparisons, cascades (results). Imports only `common`."""
