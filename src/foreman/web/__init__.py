"""``foreman ui``: a local dashboard over the run store (docs/dashboard.md).

Needs the ``ui`` extra (``pip install 'foreman[ui]'``: FastAPI and uvicorn). The JSON
answers themselves (``foreman.web.views``) need neither.
"""
