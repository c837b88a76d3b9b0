"""Use cases: one function per thing a person does.

Plain arguments in, domain objects or ``DomainError`` out. Handlers change
rows and flush; the transport that called them commits once
(``handlers.outbox.commit``). Outside effects are queued with
``handlers.outbox.after_commit`` and run only once the commit has landed.
"""
