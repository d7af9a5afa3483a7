"""Research scripts on the scene world's recipe: the base model across seeds and variants (`world_recipe`), the
demo's signature across seeds (`demo_seeds`), POPE's family share (`pope_family_share`) and how fast a bare
Llama learns to look an object up (`lookup_learning`). Their figures are in docs/world.md and docs/demo.md."""
