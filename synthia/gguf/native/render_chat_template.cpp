// Render a chat template the way llama-server --jinja does, with llama.cpp's own C++ template engine.
//
//   render_chat_template < request.json
//
// The request is one JSON object: "messages" and optional "tools" (OpenAI chat-completion JSON),
// "add_generation_prompt" (default false), and either
//   "model": a GGUF file: its embedded template, BOS/EOS texts and add-BOS flag, read by llama.cpp, as llama-server
//            does with no --chat-template; or
//   "template": the template text, with "bos_token" and "eos_token" (default "").
// Prints the rendered text on stdout and nothing else. On bad input or a template error: the reason on stderr, exit 1.
// Messages and tools go through the functions llama-server parses requests with, so the engine's own adjustments
// (tool-call arguments as objects for templates that tojson them, ...) apply here as they do in the server.
// Built by synthia/native/template_engine.py against the llama.cpp sources vendored in llama-cpp-python's sdist.

#include "chat.h"
#include "llama.h"

#include <exception>
#include <iostream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>

struct model_deleter {
    void operator()(llama_model * model) const { llama_model_free(model); }
};

using model_ptr = std::unique_ptr<llama_model, model_deleter>;

static std::string read_stdin() {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

static void drop_log(ggml_log_level, const char *, void *) {}

static model_ptr load_vocabulary(const std::string & path) {
    llama_log_set(drop_log, nullptr);  // the loader's progress lines would bury the error we print
    llama_backend_init();
    llama_model_params params = llama_model_default_params();
    params.vocab_only         = true;
    model_ptr model(llama_model_load_from_file(path.c_str(), params));
    if (!model) {
        throw std::runtime_error(path + ": llama.cpp cannot load this GGUF file");
    }
    return model;
}

static common_chat_templates_ptr templates_for(const common_json & request, model_ptr & model) {
    if (request.contains("model")) {
        model = load_vocabulary(request.at("model").get<std::string>());
        return common_chat_templates_init(model.get(), /* chat_template_override= */ "");
    }
    const std::string tmpl = request.at("template").get<std::string>();
    if (tmpl.empty()) {
        throw std::invalid_argument("'template' is empty");
    }
    return common_chat_templates_init(/* model= */ nullptr, tmpl, request.value("bos_token", ""),
                                      request.value("eos_token", ""));
}

int main() {
    try {
        const common_json request = common_json::parse(read_stdin());
        model_ptr model;
        auto templates = templates_for(request, model);
        common_chat_templates_inputs inputs;
        inputs.use_jinja             = true;
        inputs.messages              = common_chat_msgs_parse_oaicompat(request.at("messages"));
        inputs.tools                 = common_chat_tools_parse_oaicompat(request.value("tools", common_json()));
        inputs.add_generation_prompt = request.value("add_generation_prompt", false);
        std::cout << common_chat_templates_apply(templates.get(), inputs).prompt;
        std::cout.flush();
        return 0;
    } catch (const std::exception & e) {
        std::cerr << "render_chat_template: " << e.what() << "\n";
        return 1;
    }
}
