"""One module per claim of the report; each reads top to bottom: settings → experiment → statistic →
verdict → figure → Section."""
