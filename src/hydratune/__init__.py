"""hydratune: a declarative, Hydra-composed LLM fine-tuning trainer.

Data flows one way: configs -> RunSpec -> preprocess -> train -> export -> evaluate.
Each stage is a plain `run_<stage>(spec)` function; the console scripts are thin
Hydra wrappers around them.
"""

__version__ = "0.1.0"
