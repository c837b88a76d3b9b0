import sys

from app import create_app

# Under gunicorn this process only serves requests: no Flask-Migrate (the `db`
# command runs through `flask --app wsgi`, where gunicorn is not loaded).
app = create_app(migrations="gunicorn" not in sys.modules)
