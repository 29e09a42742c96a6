# The recursion-off baseline of config/shakespeare_char_384.py: the same 6 blocks run once (pre-norm,
# final norm), a plain Llama-style GPT at nanoGPT's shakespeare_char dims.
import os
exec(open(os.path.join(os.path.dirname(__file__), 'shakespeare_char_384.py')).read())
recursion = False
out_dir = 'out-shakespeare-char-384-plain'
wandb_run_name = 'shakespeare-char-384-plain'
