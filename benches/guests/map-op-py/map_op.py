"""The map operator of benches/polyglot.rs in Python: upper-cases each
value (ASCII) and keeps the key, like benches/guests/map-op."""

import weir


class UpperCase(weir.Operator):
    key = bytes
    value = bytes

    def process(self, ctx, record):
        ctx.emit(record.key, record.value.upper())


Hooks = weir.export(UpperCase)
