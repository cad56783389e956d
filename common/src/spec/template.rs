//! File templates, rendered per agent by the planner (so plans show the
//! exact content each host gets). Jinja syntax through minijinja, with
//! `agent.id`, `agent.labels.<key>` and `service.name`. Rendering is pure
//! and bounded by fuel, so a template cannot stall planning.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, context};

/// Instruction budget for one render; ample for any real config file.
const FUEL: u64 = 100_000;

/// What a template may know about the agent it renders for.
#[derive(Debug, Clone, Copy)]
pub struct AgentFacts<'a> {
    pub id: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A missing label is an error, not an empty string in a config file.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    // Config files end in a newline; keep it.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

/// Checks a template's syntax.
pub fn check(source: &str) -> Result<(), String> {
    environment()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|err| describe(&err))
}

pub fn render(source: &str, service: &str, agent: &AgentFacts<'_>) -> Result<String, String> {
    let env = environment();
    let template = env
        .template_from_str(source)
        .map_err(|err| describe(&err))?;
    template
        .render(context! {
            agent => context! { id => agent.id, labels => agent.labels },
            service => context! { name => service },
        })
        .map_err(|err| describe(&err))
}

fn describe(err: &minijinja::Error) -> String {
    match err.line() {
        Some(line) => format!(
            "template line {line}: {}",
            err.detail().unwrap_or(&err.kind().to_string())
        ),
        None => format!("template: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_agent_facts_and_refuses_unknown_ones() {
        let labels = BTreeMap::from([("site".to_owned(), "ams".to_owned())]);
        let agent = AgentFacts {
            id: "edge-1",
            labels: &labels,
        };
        let out = render(
            "{{ service.name }} on {{ agent.id }} at {{ agent.labels.site }}\n",
            "web",
            &agent,
        )
        .unwrap();
        assert_eq!(out, "web on edge-1 at ams\n");
        let err = render("{{ agent.labels.rack }}", "web", &agent).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert!(check("{% for x in %}").is_err());
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let labels = BTreeMap::new();
        let agent = AgentFacts {
            id: "a",
            labels: &labels,
        };
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "s",
            &agent,
        )
        .unwrap_err();
        assert!(err.contains("fuel"), "{err}");
    }
}
