"""Korean / English text of the training tab: widget labels, messages and per-setting labels.

Setting labels show the config field name too (``학습률 (learning_rate)``), so the UI, the CLI flags
and exported YAML files name each setting the same way. English info text is each setting's help in
kft.config.args; the Korean info text is below.
"""

from __future__ import annotations

from ..config.args import specs
from .i18n import tr

STRINGS: dict[str, tuple[str, str]] = {
    "model_box": ("모델", "Model"),
    "model": ("기본 모델 (Hub id, 로컬 폴더 또는 tiny)", "Base model (Hub id, local directory or tiny)"),
    "model_info": ("Llama 3.1 8B 4-bit가 GPU 기본값입니다. Qwen2.5 0.5B Instruct는 한국어를 아는 작은 실제 모델로 "
                   "CPU에서도 학습할 수 있습니다 (처음 한 번 Hub에서 내려받기). 'tiny'는 오프라인 기본값이며 가중치가 무작위라 "
                   "의미 없는 글을 씁니다 (앱이 돌아가는지 확인하는 용도).",
                   "Llama 3.1 8B 4-bit is the GPU default. Qwen2.5 0.5B Instruct is a small real model that knows "
                   "Korean and trains on a CPU (downloaded from the Hub once). 'tiny' is the offline default: its "
                   "weights are random and it writes noise (to check that the app works)."),
    "choice_llama": ("Llama 3.1 8B 4-bit (Unsloth) · 약 5.7 GB · GPU", "Llama 3.1 8B 4-bit (Unsloth) · about 5.7 GB · GPU"),
    "choice_small": ("Qwen2.5 0.5B Instruct · 약 1 GB · 한국어 가능, CPU 가능, 인터넷 필요",
                     "Qwen2.5 0.5B Instruct · about 1 GB · knows Korean, CPU-friendly, needs the network"),
    "choice_tiny": ("tiny (오프라인 테스트 모델, 무작위 가중치: 의미 없는 글)",
                    "tiny (offline test model, random weights: writes noise)"),
    "no_gpu": ("⚠️ GPU를 찾지 못했습니다: CPU에서 실행 중이므로 작은 오프라인 모델(tiny)이 기본값입니다. "
               "8B 모델 학습에는 CUDA GPU가 필요합니다.",
               "⚠️ No GPU found: running on the CPU, so the small offline model (tiny) is the default. "
               "Training the 8B model needs a CUDA GPU."),
    "data_box": ("데이터", "Data"),
    "data_kind": ("데이터 출처", "Data source"),
    "kind_hub": ("Hugging Face 데이터셋", "Hugging Face dataset"),
    "kind_upload": ("파일 업로드", "Uploaded file"),
    "kind_sample": ("내장 샘플 (333행)", "Bundled sample (333 rows)"),
    "hub_dataset": ("Hub 데이터셋 id", "Hub dataset id"),
    "upload": ("데이터 파일 (.jsonl, .json, .csv, .parquet; 열: instruction, output, 선택 input)",
               "Data file (.jsonl, .json, .csv, .parquet; columns: instruction, output, optional input)"),
    "preview_btn": ("데이터 미리보기", "Preview data"),
    "lora_box": ("LoRA 설정", "LoRA settings"),
    "train_box": ("학습 설정", "Training settings"),
    "length_mode": ("학습 길이", "Training length"),
    "mode_steps": ("최대 스텝 수 (max_steps)", "Max steps (max_steps)"),
    "mode_epochs": ("에폭 수 (num_train_epochs)", "Epochs (num_train_epochs)"),
    "file_box": ("설정 파일 (YAML/JSON)", "Settings file (YAML/JSON)"),
    "export_btn": ("설정 내보내기", "Export settings"),
    "export_file": ("내보낸 설정", "Exported settings"),
    "import_file": ("설정 가져오기 (.yaml, .yml, .json)", "Import settings (.yaml, .yml, .json)"),
    "start": ("학습 시작", "Start training"),
    "stop": ("중지", "Stop"),
    "progress_box": ("진행 상황", "Progress"),
    "loss_plot": ("손실 (loss)", "Loss"),
    "watch_box": ("거절 관찰 (관찰 프롬프트에 대한 어댑터의 답변, 스텝별)", "Watch the refusal appear (the adapter's "
                  "answers to the watch prompts, by step)"),
    "watch_none": ("아직 관찰한 답변이 없습니다. 학습 설정에서 '거절 관찰 간격'을 0보다 크게 하면 N 스텝마다 어댑터가 "
                   "유해·무해 프롬프트 하나씩에 답합니다.",
                   "No watched answers yet. Set 'Watch the refusal every N steps' above 0 in the training settings and "
                   "every N steps the adapter answers one harmful and one benign prompt."),
    "watch_harmful": ("유해", "Harmful"),
    "watch_benign": ("무해", "Benign"),
    "watch_refused": ("거절", "refusal"),
    "watch_answered": ("답변함", "answers"),
    "lr_plot": ("학습률 (learning rate)", "Learning rate"),
    "mem_plot_gpu": ("GPU 메모리 (GB)", "GPU memory (GB)"),
    "mem_plot_cpu": ("프로세스 메모리 RSS (GB) - CPU, GPU 없음", "Process memory, RSS (GB) - CPU, no GPU"),
    "log": ("로그 (최근)", "Log (latest)"),
    "result_box": ("결과", "Result"),
    "memory_report": ("메모리 보고서", "Memory report"),
    "run_dir": ("실행 폴더", "Run directory"),
    "zip": ("어댑터 다운로드 (zip)", "Adapter download (zip)"),
    "push_repo": ("Hub 저장소 id (예: your-name/kft-lora)", "Hub repository id (e.g. your-name/kft-lora)"),
    "push_private": ("비공개 저장소", "Private repository"),
    "push_btn": ("Hub에 올리기", "Push to Hub"),
    "push_info": ("마지막 실행의 어댑터를 올립니다. 토큰은 서버 환경 변수 HF_TOKEN에서만 읽고, 화면에 보이거나 기록되지 않습니다.",
                  "Pushes the last run's adapter. The token is read only from the server's HF_TOKEN environment "
                  "variable; it is never shown or logged."),
    "read_only": ("🔒 읽기 전용 모드입니다 (비교 전용): 이 서버에서는 학습을 시작할 수 없습니다. 비교 탭을 사용하세요.",
                  "🔒 Read-only mode (comparison only): training is switched off on this server. Use the comparison tab."),
    # messages
    "started": ("학습을 시작했습니다: {run}", "Training started: {run}"),
    "refused": ("시작할 수 없습니다: {msg}", "Cannot start: {msg}"),
    "busy": ("이미 학습이 진행 중입니다. 한 번에 하나의 실행만 가능합니다: {msg}",
             "A run is already in progress; only one run at a time: {msg}"),
    "busy_finishing": ("방금 끝난 실행이 아직 메모리를 정리하고 있습니다. 잠시 후 다시 시작하세요.",
                       "The run that just ended is still freeing its memory; start again in a moment."),
    "busy_generating": ("비교 탭에서 생성이 진행 중이라 모델을 쓰고 있습니다. 생성이 끝난 뒤 다시 시작하세요.",
                        "The comparison tab is generating on the model; start again when it has finished."),
    "stop_sent": ("중지를 요청했습니다: 현재 스텝이 끝나면 멈추고 어댑터를 저장합니다.",
                  "Stop requested: the run ends after the current step and keeps its adapter."),
    "nothing_to_stop": ("진행 중인 학습이 없습니다.", "No run in progress."),
    "no_run": ("아직 실행한 학습이 없습니다.", "No run yet."),
    "status": ("상태", "Status"),
    "step": ("스텝", "Step"),
    "elapsed": ("경과", "Elapsed"),
    "eta": ("남은 시간", "ETA"),
    "tps": ("토큰/초", "Tokens/s"),
    "reason": ("이유", "Reason"),
    "backend": ("백엔드", "Backend"),
    "exported": ("설정을 파일로 내보냈습니다.", "Settings exported to a file."),
    "imported": ("설정을 불러왔습니다: {name}", "Settings imported: {name}"),
    "attached": ("진행 중인 실행 {run}의 설정을 보여 줍니다.", "Showing the settings of the run in progress, {run}."),
    "import_problems": ("불러온 설정에 문제가 있습니다 (시작 전에 고치세요):", "The imported settings have problems (fix before starting):"),
    "reupload": ("설정의 데이터 파일 {src}은(는) 다시 업로드해야 합니다.", "The settings' data file {src} must be uploaded again."),
    "pushed": ("Hub에 올렸습니다: {url}", "Pushed to the Hub: {url}"),
    "push_failed": ("Hub에 올리지 못했습니다: {msg}", "Push failed: {msg}"),
    "zip_failed": ("zip을 만들지 못했습니다: {msg}", "Could not build the zip: {msg}"),
    "preview_failed": ("미리보기를 할 수 없습니다: {msg}", "Cannot preview: {msg}"),
    "pv_rows": ("원본 {total}행 중 학습에 쓰일 행 {used}개 (오류 {errors}, 경고 {warnings})",
                "{used} of {total} rows in the source will be trained on ({errors} errors, {warnings} warnings)"),
    "pv_tokens": ("토큰 길이", "Token lengths"),
    "pv_sampled": ("모든 행을 검사했고, 토큰 길이와 길이 경고는 처음 {n:,}개 행에서 셌습니다 (큰 파일을 적은 메모리로 "
                   "미리보기 위해서입니다. 학습을 시작하면 모든 행을 잽니다).",
                   "Every row was checked; token lengths and length warnings are from the first {n:,} rows (so a "
                   "large file is previewed in little memory; a run measures every row)."),
    "pv_examples": ("학습 템플릿으로 만든 예시 (EOS 포함, 학습 때와 똑같은 텍스트)",
                    "Rows rendered in the training template (with EOS, the exact training text)"),
    "pv_problems": ("행별 문제 ({n}개)", "Problems by row ({n})"),
    "pv_no_problems": ("문제 있는 행이 없습니다.", "No problem rows."),
    "pv_more": ("... 외 {n}개", "... and {n} more"),
    "missing_upload": ("업로드한 파일이 없습니다: 데이터 파일을 올리세요.", "No file uploaded: upload a data file."),
    "not_hub_id": ("{src!r}는 Hugging Face 데이터셋 id(조직/이름)가 아닙니다.", "{src!r} is not a Hugging Face dataset id (org/name)."),
    "stop_sent_no_adapter": ("중지를 요청했습니다: 첫 스텝 전에 멈추므로 어댑터는 저장되지 않습니다.",
                             "Stop requested: the run ends before its first step, so no adapter is saved."),
}

STATUS: dict[str, tuple[str, str]] = {
    "idle": ("대기 중", "idle"),
    "pending": ("준비 중", "pending"),
    "loading": ("모델과 데이터 불러오는 중", "loading model and data"),
    "running": ("학습 중", "running"),
    "stopping": ("중지하는 중", "stopping"),
    "completed": ("완료", "completed"),
    "stopped": ("중지됨", "stopped"),
    "failed": ("실패", "failed"),
    "interrupted": ("중단됨", "interrupted"),
}

FIELD_LABELS: dict[str, tuple[str, str]] = {
    "max_seq_length": ("최대 시퀀스 길이", "Max sequence length"),
    "dtype": ("연산 정밀도", "Compute dtype"),
    "load_in_4bit": ("4비트 로딩", "Load in 4-bit"),
    "backend": ("백엔드", "Backend"),
    "r": ("LoRA 랭크", "LoRA rank"),
    "target_modules": ("대상 레이어", "Target modules"),
    "lora_alpha": ("LoRA 알파", "LoRA alpha"),
    "lora_dropout": ("LoRA 드롭아웃", "LoRA dropout"),
    "bias": ("바이어스 학습", "Bias"),
    "use_gradient_checkpointing": ("그래디언트 체크포인팅", "Gradient checkpointing"),
    "checkpoint_layers": ("체크포인팅할 레이어 수 (비우면 전부)", "Checkpointed layers (empty = all)"),
    "random_state": ("어댑터 초기화 시드", "Adapter init seed"),
    "use_rslora": ("rsLoRA 사용", "Use rsLoRA"),
    "loftq_config": ("LoftQ 설정 (JSON, 비우면 없음)", "LoftQ config (JSON, empty = none)"),
    "split": ("데이터셋 분할", "Dataset split"),
    "max_rows": ("최대 행 수 (0 = 전체)", "Max rows (0 = all)"),
    "too_long": ("너무 긴 행 처리", "Too-long rows"),
    "per_device_train_batch_size": ("배치 크기", "Batch size"),
    "gradient_accumulation_steps": ("그래디언트 누적 스텝", "Gradient accumulation steps"),
    "warmup_steps": ("워밍업 스텝", "Warm-up steps"),
    "max_steps": ("최대 스텝", "Max steps"),
    "num_train_epochs": ("에폭 수", "Epochs"),
    "learning_rate": ("학습률", "Learning rate"),
    "logging_steps": ("로그 간격 (스텝)", "Logging every N steps"),
    "optim": ("옵티마이저", "Optimizer"),
    "weight_decay": ("가중치 감쇠", "Weight decay"),
    "max_grad_norm": ("그래디언트 클리핑 노름", "Max gradient norm"),
    "lr_scheduler_type": ("학습률 스케줄", "LR schedule"),
    "seed": ("시드", "Seed"),
    "save_steps": ("체크포인트 간격 (비우면 자동, 0 = 마지막만)", "Checkpoint every N steps (empty = auto, 0 = final only)"),
    "save_total_limit": ("남길 체크포인트 수", "Checkpoints to keep"),
    "padding_free": ("패딩 없는 배치", "Padding-free batches"),
    "pad_to_multiple_of": ("길이를 N의 배수로 패딩 (0 = 안 함)", "Pad length to a multiple of N (0 = off)"),
    "eval_share": ("평가용으로 떼어 둘 비율 (0 = 끔)", "Held-out evaluation share (0 = off)"),
    "watch_every": ("거절 관찰 간격 (스텝, 0 = 끔)", "Watch the refusal every N steps (0 = off)"),
    "watch_harmful": ("관찰용 유해 프롬프트", "Harmful watch prompt"),
    "watch_benign": ("관찰용 무해 프롬프트", "Benign watch prompt"),
    "preset": ("프리셋", "Preset"),
}

FIELD_INFO_KO: dict[str, str] = {
    "max_seq_length": "프롬프트와 답변을 합친 최대 토큰 수.",
    "dtype": "auto = compute capability 8 이상은 bf16, 그 아래(T4)는 fp16, CPU는 fp32.",
    "load_in_4bit": "기본 가중치를 4비트로 양자화 (GPU 전용, CPU에서는 무시).",
    "backend": "auto는 CUDA와 unsloth가 있으면 Unsloth를 고릅니다.",
    "r": "LoRA 업데이트 행렬의 랭크.",
    "target_modules": "어댑터를 붙일 선형 레이어.",
    "lora_alpha": "스케일 분자: 업데이트는 alpha / r 배 (rsLoRA는 alpha / sqrt(r)).",
    "lora_dropout": "어댑터 입력의 드롭아웃.",
    "bias": "학습할 바이어스: none | all | lora_only.",
    "use_gradient_checkpointing": "\"unsloth\" (오프로딩 체크포인팅), true 또는 false.",
    "checkpoint_layers": "체크포인팅이 켜져 있을 때 역전파에서 활성값을 다시 계산할 디코더 레이어 수. 나머지 레이어는 "
                         "활성값을 메모리에 둡니다 (더 빠르고 메모리를 더 씀). 비우면 전부 (레시피 그대로).",
    "random_state": "어댑터 초기 가중치의 시드.",
    "use_rslora": "랭크 안정화 LoRA 스케일.",
    "loftq_config": "LoftQ 초기화 설정 (JSON 객체), 비우면 사용 안 함.",
    "split": "Hub 데이터셋의 분할.",
    "max_rows": "앞에서부터 N행만 사용 (0 = 전체).",
    "too_long": "max_seq_length보다 긴 행: drop(제외) | truncate(자르기) | error(오류).",
    "per_device_train_batch_size": "마이크로배치당 행 수.",
    "gradient_accumulation_steps": "옵티마이저 스텝당 마이크로배치 수.",
    "warmup_steps": "학습률 선형 워밍업 스텝.",
    "max_steps": "옵티마이저 스텝 수 ('학습 길이'가 스텝일 때 사용).",
    "num_train_epochs": "에폭 수 ('학습 길이'가 에폭일 때 사용).",
    "learning_rate": "최대 학습률.",
    "logging_steps": "N 스텝마다 손실과 학습률을 기록.",
    "optim": "transformers 옵티마이저 이름 (adamw_8bit는 CPU에서 adamw_torch로 대체).",
    "weight_decay": "분리된 가중치 감쇠.",
    "max_grad_norm": "그래디언트 노름을 이 값으로 자릅니다 (0 = 자르지 않음).",
    "lr_scheduler_type": "학습률 스케줄.",
    "seed": "데이터 순서와 드롭아웃의 시드.",
    "save_steps": "N 스텝마다 체크포인트 저장. 비우면 자동: 실행 길이에 맞춰 약 10번 (최소 10스텝 간격, 최근 3개 보관); "
                  "0 = 마지막 어댑터만.",
    "eval_share": "이 비율의 행을 학습에서 빼 두고 그 손실(평가 손실)을 학습 손실 옆에 그립니다 (0 = 끔, seed는 모든 행으로 학습).",
    "watch_every": "N 스텝마다 어댑터가 관찰 프롬프트 두 개에 짧게 답합니다 (48토큰, greedy): 거절이 생기는 과정이 "
                   "진행 상황 아래 타임라인에 보이고 실행 폴더의 refusals.jsonl에 기록됩니다 (0 = 끔).",
    "watch_harmful": "거절하게 되어야 할 유해 프롬프트.",
    "watch_benign": "계속 답해야 할 무해 프롬프트.",
    "save_total_limit": "실행마다 최근 체크포인트 N개만 남깁니다 (오래된 것은 지웁니다. 이어서 학습은 완전한 최신 체크포인트에서).",
    "padding_free": "마이크로배치의 행들을 패드 토큰 없이 한 시퀀스로 이어 붙임; 위치와 어텐션은 행마다 다시 시작.",
    "pad_to_multiple_of": "마이크로배치 길이를 N 토큰의 배수로 올려 패딩합니다. 컴파일된 커널이 만나는 길이 종류가 줄어듭니다 "
                          "(0 또는 비우면 가장 긴 행까지만, 시드 그대로).",
    "preset": "seed = 원래 레시피 (2행 x 누적 4, 8비트 AdamW, 오프로딩 체크포인팅); fast = 같은 8행을 한 마이크로배치에 "
              "(길이를 64의 배수로 패딩, GPU 체크포인팅, fused AdamW). 고르면 해당 설정들이 바뀝니다.",
}


FIELD_INFO_EN = {**{s.name: s.help for s in specs()}, "max_rows": "Use only the first N rows (0 = all).",
                 "preset": "seed = the recipe as written (2 rows x 4 accumulation, 8-bit AdamW, offloaded "
                           "checkpointing); fast = the same 8 rows in one micro-batch (length padded to a multiple of "
                           "64, checkpointing on the GPU, fused AdamW). Choosing one sets those settings."}


def t(key: str, lang: str, **fmt: object) -> str:
    """Text of this tab in lang."""
    return tr(STRINGS, key, lang, **fmt)


def field_label(name: str, lang: str) -> str:
    return f"{tr(FIELD_LABELS, name, lang)} ({name})"


def field_info(name: str, lang: str) -> str:
    return FIELD_INFO_KO.get(name, "") if lang == "ko" else FIELD_INFO_EN.get(name, "")


def status_text(status: str, lang: str) -> str:
    return tr(STATUS, status, lang)
