// The pybind11 module torchquantx._C: CPU feature queries and the kernel ISA override. Operators
// and observers are reached through torch.ops.quantx / torch.classes.quantx instead.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "kernels/isa.h"

namespace py = pybind11;
namespace k = tqx::kernels;

PYBIND11_MODULE(_C, m) {
  m.doc() = "torchquantx native helpers";
  m.def("detected_isa", [] { return std::string(k::isa_name(k::detected_isa())); },
        "The best kernel ISA level this CPU supports.");
  m.def("active_isa", [] { return std::string(k::isa_name(k::active_isa())); },
        "The ISA level kernels dispatch to now.");
  m.def("isa_supported", [](const std::string& name) { return k::isa_supported(k::parse_isa(name)); },
        py::arg("name"));
  m.def("set_max_isa", [](const std::string& name) { k::set_max_isa(k::parse_isa(name)); }, py::arg("name"),
        "Caps kernel dispatch at an ISA level (e.g. 'scalar' forces the reference kernels).");
  m.def("reset_max_isa", &k::reset_max_isa, "Undoes set_max_isa().");
  m.attr("__version__") = TQX_VERSION;
}
