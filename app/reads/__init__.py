"""Read models: the queries behind GET answers, shaped into the API's response bodies.

Each loads what it shows in a fixed number of queries however many items it returns (a page of
cases, a worker's tasks), and checks who may see what in the query or beside it. The HTTP
routes call these and return their results; nothing here knows of HTTP.
"""

from app.reads.access import check_case, check_worker, may_see_photo, report_in_scope
from app.reads.cases import case_page, case_view, sla_state, sla_states
from app.reads.catalog import categories, worker_profile, worker_profiles
from app.reads.common import grid_read, public_actor, report_links, resident_safe
from app.reads.personal import access_page, resident_data
from app.reads.reports import report_view
from app.reads.tasks import pending_verifications, task_view, worker_tasks

__all__ = [
    "access_page",
    "case_page",
    "case_view",
    "categories",
    "check_case",
    "check_worker",
    "grid_read",
    "may_see_photo",
    "pending_verifications",
    "public_actor",
    "report_in_scope",
    "report_links",
    "report_view",
    "resident_data",
    "resident_safe",
    "sla_state",
    "sla_states",
    "task_view",
    "worker_profile",
    "worker_profiles",
    "worker_tasks",
]
