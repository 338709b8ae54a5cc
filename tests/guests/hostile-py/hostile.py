"""A Python operator that misbehaves as its `behavior` config says, for
tests/polyglot.rs: each misbehaviour must fail the job with a clear error
naming the operator, within a deadline."""

import time

import weir


class Hostile(weir.Operator):
    key = str
    value = str

    def open(self, ctx):
        self.behavior = ctx.config("behavior", "none")
        if ctx.config("on") == "open":
            self.misbehave()

    def process(self, ctx, record):
        self.misbehave()
        ctx.emit(record.key, record.value)

    def misbehave(self):
        if self.behavior == "exception":
            raise ValueError("the python operator failed on purpose")
        if self.behavior == "infinite-loop":
            n = 0
            while True:
                n += 1
        if self.behavior == "sleep":
            time.sleep(10)


Hooks = weir.export(Hostile)
