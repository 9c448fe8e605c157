"""Walk a Plan: run or reuse each step in containers, assemble the runtime, tag."""
