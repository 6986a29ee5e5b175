"""Workers render webhook bodies with the API's models, yet never load the web framework."""

import subprocess
import sys


def test_worker_modules_do_not_import_flask():
    code = ("import sys, algohost.worker.tasks, algohost.worker.batch_tasks, "
            "algohost.worker.webhook_tasks, algohost.public; "
            "sys.exit('flask' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_the_api_and_the_webhook_body_share_one_job_model():
    from algohost.api.schemas import Job, public_job
    from algohost.public import Job as PublicJob
    from algohost.public import public_job as shared

    assert Job is PublicJob and public_job is shared
