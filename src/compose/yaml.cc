#include "compose/yaml.h"

#include <yaml.h>

namespace berth::compose::yaml {

namespace {

// Bounds on what a document may expand to: aliases make a tree out of a graph,
// and a few lines of anchors can stand for billions of nodes.
constexpr size_t kMaxNodes = 200000;
constexpr int kMaxDepth = 100;

class Builder {
 public:
  Builder(yaml_document_t* doc, const std::string& file) : doc_(doc), file_(file) {}

  // The tree of the node at `index` (1-based, libyaml's), copied once per use.
  Result<NodePtr> Build(int index, int depth) {
    if (++count_ > kMaxNodes) {
      return Error::Invalid(file_ + ": the document expands to more than " + std::to_string(kMaxNodes) +
                            " nodes (aliases)");
    }
    yaml_node_t* y = yaml_document_get_node(doc_, index);
    auto n = std::make_shared<Node>();
    n->file = file_;
    n->line = y ? static_cast<int>(y->start_mark.line) + 1 : 0;
    if (depth > kMaxDepth) return Error::Invalid(n->Where() + ": nested more than 100 levels deep");
    if (!y) return n;
    switch (y->type) {
      case YAML_SCALAR_NODE: {
        n->text.assign(reinterpret_cast<const char*>(y->data.scalar.value), y->data.scalar.length);
        n->quoted = y->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        bool null_text =
            n->text.empty() || n->text == "~" || n->text == "null" || n->text == "Null" || n->text == "NULL";
        n->kind = !n->quoted && null_text ? Kind::kNull : Kind::kScalar;
        return n;
      }
      case YAML_SEQUENCE_NODE:
        n->kind = Kind::kSequence;
        for (yaml_node_item_t* i = y->data.sequence.items.start; i < y->data.sequence.items.top; i++) {
          Result<NodePtr> item = Build(*i, depth + 1);
          if (!item) return item;
          n->items.push_back(std::move(item.value()));
        }
        return n;
      case YAML_MAPPING_NODE: {
        n->kind = Kind::kMapping;
        // Merge keys are applied after the explicit keys: an explicit key wins, and
        // among merged mappings the first that has a key wins (YAML's merge type).
        std::vector<NodePtr> merges;
        for (yaml_node_pair_t* p = y->data.mapping.pairs.start; p < y->data.mapping.pairs.top; p++) {
          yaml_node_t* k = yaml_document_get_node(doc_, p->key);
          int key_line = k ? static_cast<int>(k->start_mark.line) + 1 : n->line;
          if (!k || k->type != YAML_SCALAR_NODE) {
            return Error::Invalid(file_ + ":" + std::to_string(key_line) + ": a mapping key must be a plain value");
          }
          std::string key(reinterpret_cast<const char*>(k->data.scalar.value), k->data.scalar.length);
          Result<NodePtr> value = Build(p->value, depth + 1);
          if (!value) return value;
          if (key == "<<" && k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            merges.push_back(std::move(value.value()));
            continue;
          }
          if (n->Get(key)) return Error::Invalid(file_ + ":" + std::to_string(key_line) + ": duplicate key " + key);
          n->pairs.emplace_back(std::move(key), std::move(value.value()));
          n->key_lines.push_back(key_line);
        }
        for (const NodePtr& m : merges) {
          std::vector<NodePtr> sources;
          if (m->IsMap()) {
            sources.push_back(m);
          } else if (m->IsSeq()) {
            sources = m->items;
          }
          for (const NodePtr& s : sources) {
            if (!s->IsMap()) return Error::Invalid(m->Where() + ": << must merge a mapping or a list of mappings");
            for (size_t i = 0; i < s->pairs.size(); i++) {
              if (n->Get(s->pairs[i].first)) continue;
              n->pairs.emplace_back(s->pairs[i].first, Clone(*s->pairs[i].second));
              n->key_lines.push_back(s->key_lines[i]);
            }
          }
          if (sources.empty()) return Error::Invalid(m->Where() + ": << must merge a mapping or a list of mappings");
        }
        return n;
      }
      default: return n;
    }
  }

 private:
  yaml_document_t* doc_;
  const std::string& file_;
  size_t count_ = 0;
};

}  // namespace

const Node* Node::Get(std::string_view key) const {
  for (const auto& p : pairs) {
    if (p.first == key) return p.second.get();
  }
  return nullptr;
}

Node* Node::GetMutable(std::string_view key) {
  for (auto& p : pairs) {
    if (p.first == key) return p.second.get();
  }
  return nullptr;
}

const char* Node::KindName() const {
  switch (kind) {
    case Kind::kNull: return "empty";
    case Kind::kScalar: return "a single value";
    case Kind::kSequence: return "a list";
    case Kind::kMapping: return "a mapping";
  }
  return "?";
}

Result<NodePtr> Parse(std::string_view text, const std::string& file) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return Error::Internal("libyaml: cannot initialise a parser");
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  yaml_document_t doc;
  if (!yaml_parser_load(&parser, &doc)) {
    std::string problem = parser.problem ? parser.problem : "not valid YAML";
    if (parser.context) problem = std::string(parser.context) + ": " + problem;
    size_t line = parser.problem_mark.line + 1;
    yaml_parser_delete(&parser);
    return Error::Invalid(file + ":" + std::to_string(line) + ": " + problem);
  }
  Result<NodePtr> out = Error::Internal("unset");
  if (!yaml_document_get_root_node(&doc)) {
    auto n = std::make_shared<Node>();
    n->file = file;
    n->line = 1;
    out = n;
  } else {
    Builder b(&doc, file);
    out = b.Build(1, 0);
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return out;
}

NodePtr Clone(const Node& n) {
  auto c = std::make_shared<Node>();
  c->kind = n.kind;
  c->text = n.text;
  c->quoted = n.quoted;
  c->file = n.file;
  c->line = n.line;
  c->key_lines = n.key_lines;
  for (const NodePtr& i : n.items) c->items.push_back(Clone(*i));
  for (const auto& p : n.pairs) c->pairs.emplace_back(p.first, Clone(*p.second));
  return c;
}

}  // namespace berth::compose::yaml
