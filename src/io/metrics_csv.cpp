// metrics.csv (kd/report.h): one row per epoch of every model.
#include <string>

#include "kd/report.h"

namespace kd {

std::string metrics_csv(const RunReport& r) {
  std::string out = "phase,epoch,train_loss,train_kl,val_loss,val_acc,seconds,samples_per_s\n";
  for (const ModelReport& m : r.models)
    for (const EpochRecord& e : m.curve) out += metrics_csv_row(e);
  return out;
}

}  // namespace kd
