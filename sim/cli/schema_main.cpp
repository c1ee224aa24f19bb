// kvmsim-schema TEMPLATE HOSTS_DIR OUT: writes the scenario schema generated from the loader's
// tables (sim/scenario/schema.hpp), with TEMPLATE (the committed schema) for everything else.
#include <cstdio>
#include <exception>
#include <string>

#include "models/registry.hpp"
#include "sim/report/output_file.hpp"
#include "sim/scenario/json_util.hpp"
#include "sim/scenario/loader.hpp"
#include "sim/scenario/input_file.hpp"
#include "sim/scenario/schema.hpp"

int main(int argc, char** argv) {
    using namespace kvmsim;
    if (argc != 4) {
        std::fprintf(stderr, "usage: kvmsim-schema TEMPLATE HOSTS_DIR OUT\n");
        return 2;
    }
    try {
        const auto templ = nlohmann::ordered_json::parse(scenario::read_input_file(argv[1], "the schema"));
        const auto schema = scenario::generate_scenario_schema(templ, models::builtin_models(),
                                                               scenario::host_profiles({argv[2]}));
        report::write_output_file(argv[3], schema.dump(2, ' ', false) + "\n", "OUT");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvmsim-schema: %s\n", e.what());
        return 2;
    }
}
