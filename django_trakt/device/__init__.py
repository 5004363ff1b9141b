"""Trakt's device flow: linking by code (pages) and signing in by code (headless API).

One flow (:mod:`.flow`: start, poll, budgets, locks) behind two front ends: the pages of
:mod:`.views` (a signed-in user links an account, in ``site_urls``) and the headless
endpoints of :mod:`.headless` (an app signs a visitor in). A code waiting for approval is a
:class:`.pending.PendingCode` in the session; what a poll means is a :class:`.answers.PollAnswer`;
what Trakt's approval turns into is :mod:`.approval`.

Internal, like the layers: a site includes :mod:`django_trakt.device.headless_urls` (the
headless endpoints) and ``django_trakt.site_urls`` (the pages), and imports nothing else.
"""
