//! The event source mapping's filter in infra/template.yaml is the one the registry derives:
//! tally's own items never invoke the function, and every application item does.

#[path = "support/template.rs"]
mod template;

#[test]
fn the_templates_filter_is_the_one_the_registry_derives() {
    assert_eq!(
        template::template_patterns(),
        template::criteria_patterns(&tally_engine::registry::filter_criteria()),
        "infra/template.yaml's FilterCriteria differs from tally_engine::registry::filter_criteria(); update the template"
    );
}
