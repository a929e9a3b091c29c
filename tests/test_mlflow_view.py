"""An interactive run as MLflow itself shows it: made in a real ipykernel with the magics, read back with MLflow's own
`MlflowClient` on the SQLite store (not through mlops_nb): experiment kind, system metrics, dataset inputs, few tags,
and the notebook as HTML with its outputs."""
import json

import pytest

from _resilience_helpers import Kernel, clean_env
from mlops_nb.core.config import resolve_settings
from mlops_nb.core.names import meta_of
from mlops_nb.store.client import open_client

pytestmark = pytest.mark.integration

# what a user filters on, and nothing else: MLflow's own four (no git repository, no notebook file here, so no
# mlflow.source.git.* / mlflow.source.name), our kind and pipeline, the store's idempotency key and the one JSON tag
EXPECTED_TAGS = {'mlflow.runName', 'mlflow.user', 'mlops_nb.kind', 'mlops_nb.pipeline', 'mlops_nb.journal_run', 'mlops_nb.meta'}
MAX_TAGS = 11  # the bound for any interactive run: these 6, plus mlflow.source.{name,type} with a notebook file and
# mlflow.source.git.{commit,branch,repoURL} in a git repository (was 12 mlops_nb.* tags alone before)


@pytest.fixture
def kernel(project, tmp_path):
    k = Kernel.start(clean_env(), project, tmp_path/'kernel.json')
    yield k
    k.km.shutdown_kernel(now=False)


def test_an_interactive_run_reads_back_through_mlflows_own_client(project, kernel):
    kernel.run("%load_ext mlops_nb")
    kernel.run("import mlops_nb as mn, pandas as pd\nfrom mlops_nb import tracking\nprint('before tracking: set up')")
    kernel.run("%mlops track --name shown --system-metrics 0.3")
    kernel.run("df = pd.DataFrame(dict(x=range(500), y=[i % 3 for i in range(500)]))\nmn.track_data(df, 'train')\n"
               "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass  # CPU work for the usage metrics\n"
               "mn.log_metric('acc', 0.875)\nprint('hello from the training cell')")
    failed = kernel.run("1/0", allow_error=True)
    assert failed['ename'] == 'ZeroDivisionError'
    kernel.run("%mlops stop")

    s = resolve_settings(project_dir=project)
    open_client(s, fresh=True)  # the read barrier: everything the kernel journaled is in the store
    from mlflow.tracking import MlflowClient
    c = MlflowClient(tracking_uri=s.tracking_uri)
    exp = c.get_experiment_by_name('demo-project')
    assert exp.tags['mlflow.experimentKind'] == 'custom_model_development'  # MLflow's training view, not GenAI
    (run,) = c.search_runs([exp.experiment_id], "tags.mlflow.runName = 'shown'")

    m = run.data.metrics
    assert m['acc'] == 0.875 and not any(k.startswith('usage/') for k in m), sorted(m)
    assert {k for k in m if not k.startswith('system/')} == {'acc'}, sorted(m)  # resources all in the System metrics tab
    assert m['system/run_cpu_seconds'] >= 0.9 and m['system/run_data_rows'] == 500 and m['system/run_peak_memory_megabytes'] > 50
    assert 'system/cpu_utilization_percentage' in m and 'system/process_memory_rss_megabytes' in m, sorted(m)  # the sampler: MLflow's names

    (ds,) = run.inputs.dataset_inputs
    assert ds.dataset.name == 'train' and len(ds.dataset.digest) == 16
    assert [f['name'] for f in json.loads(ds.dataset.schema)['mlflow_colspec']] == ['x', 'y']
    assert json.loads(ds.dataset.profile) == {'num_rows': 500}
    assert {t.key: t.value for t in ds.tags}['mlflow.data.context'] == 'train'

    tags = run.data.tags
    assert set(tags) == EXPECTED_TAGS and len(tags) <= MAX_TAGS, sorted(tags)
    assert tags['mlops_nb.kind'] == 'interactive'
    meta = meta_of(tags)
    assert (meta['cells_run'], meta['errors'], meta['data.train.rows']) == ('2', '1', '500'), meta  # the cells after `%mlops track`
    assert meta['version'] and meta['packages.sha256']

    arts = {f.path for f in c.list_artifacts(run.info.run_id, 'notebook')}
    assert 'notebook/notebook.html' in arts, arts
    page = open(c.download_artifacts(run.info.run_id, 'notebook/notebook.html', str(project.parent))).read()
    first, before = page.index('%load_ext mlops_nb'), page.index('before tracking: set up')
    assert first < before < page.index('hello from the training cell')  # from the top of the notebook, not from `%mlops track`
    assert '<pre class="out stdout">hello from the training cell\n</pre>' in page  # the cell's output
    assert 'Traceback (most recent call last)' in page and 'ZeroDivisionError: division by zero' in page  # the error, with its traceback
    assert '\x1b[' not in page
