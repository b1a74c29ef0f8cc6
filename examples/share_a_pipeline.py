"""Share a fitted pipeline through a hub and get it back verified (runs in seconds).

A hub is any fsspec URL: a folder (as here), or ``s3://bucket/prefix`` with ``pip install
"virtualcell[s3]"`` (an S3-compatible server is named by ``AWS_ENDPOINT_URL``). Versions are
immutable and a publish is all or nothing; every pulled file is checked against the manifest,
and the pipeline's Merkle hash (every file of every component) is checked again on load.
"""

import shutil

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.registry import TamperedArtifactError
from virtualcell.registry.publish import list_published, publish, pull

adata = simulate_perturbation(n_cells_per_group=40, n_genes=50, n_cell_types=3, seed=0)
pipeline = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 10}).fit(
    adata, condition_key="condition", control="control", context_key="cell_type", seed=0, progress=False)
pipeline.save("my-pipeline", overwrite=True)

digest = publish("my-pipeline", "hub", "pbmc-demo", "1.0.0")          # a version appears only when whole
print("published pbmc-demo 1.0.0, content sha256", digest[:16], "| hub holds", list_published("hub"))
folder = pull("hub", "pbmc-demo", cache_dir="cache")                 # latest version, every file verified
shared = vc.PerturbationPipeline.load(folder)
print("pulled into", folder, "| encoder:", type(shared.encoder).__name__)

# A component folder swapped in from another pipeline is refused by the Merkle record
other = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 10}).fit(
    simulate_perturbation(n_cells_per_group=40, n_genes=50, n_cell_types=3, seed=1),
    condition_key="condition", control="control", context_key="cell_type", seed=0, progress=False)
other.save("other-pipeline", overwrite=True)
shutil.rmtree("my-pipeline/encoder")
shutil.copytree("other-pipeline/encoder", "my-pipeline/encoder")
try:
    vc.PerturbationPipeline.load("my-pipeline")
except TamperedArtifactError as error:
    print("refused:", str(error)[:110], "...")
