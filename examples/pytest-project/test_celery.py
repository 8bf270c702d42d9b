import pytest

pytest.importorskip("celery")


def test_a_task_runs_through_the_broker(celery_app, celery_worker):
    @celery_app.task
    def add(x, y):
        return x + y

    celery_worker.reload()
    assert add.delay(2, 3).get(timeout=10) == 5
