#include "synthetic/component_configs.h"

#include <numeric>

namespace canvas::synthetic {

nlohmann::json model_index_json(SyntheticPipeline pipeline) {
  nlohmann::json index = {{"_class_name", "QwenImagePipeline"},
                          {"_diffusers_version", "0.34.0.dev0"},
                          {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
                          {"text_encoder", {"transformers", "Qwen2_5_VLForConditionalGeneration"}},
                          {"tokenizer", {"transformers", "Qwen2Tokenizer"}},
                          {"transformer", {"diffusers", "QwenImageTransformer2DModel"}},
                          {"vae", {"diffusers", "AutoencoderKLQwenImage"}}};
  if (pipeline == SyntheticPipeline::EditPlus) {
    index["_class_name"] = "QwenImageEditPlusPipeline";
    index["_diffusers_version"] = "0.36.0.dev0";
    index["processor"] = {"transformers", "Qwen2VLProcessor"};
  }
  return index;
}

nlohmann::json scheduler_config_json() {
  return {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
          {"_diffusers_version", "0.34.0.dev0"},
          {"base_image_seq_len", 256},
          {"base_shift", 0.5},
          {"invert_sigmas", false},
          {"max_image_seq_len", 8192},
          {"max_shift", 0.9},
          {"num_train_timesteps", 1000},
          {"shift", 1.0},
          {"shift_terminal", 0.02},
          {"stochastic_sampling", false},
          {"time_shift_type", "exponential"},
          {"use_beta_sigmas", false},
          {"use_dynamic_shifting", true},
          {"use_exponential_sigmas", false},
          {"use_karras_sigmas", false}};
}

nlohmann::json transformer_config_json(const ComponentSizes& sizes, SyntheticPipeline pipeline) {
  nlohmann::json config = {{"_class_name", "QwenImageTransformer2DModel"},
                           {"_diffusers_version", "0.36.0"},
                           {"attention_head_dim", kHeadDim},
                           {"axes_dims_rope", {16, 56, 56}},
                           {"guidance_embeds", false},
                           {"in_channels", 64},
                           {"joint_attention_dim", sizes.text_hidden_size()},
                           {"num_attention_heads", sizes.transformer_heads},
                           {"num_layers", sizes.transformer_layers},
                           {"out_channels", 16},
                           {"patch_size", 2}};
  if (pipeline == SyntheticPipeline::EditPlus) config["zero_cond_t"] = true;
  return config;
}

nlohmann::json text_encoder_config_json(const ComponentSizes& sizes) {
  const int64_t hidden = sizes.text_hidden_size();
  // Qwen2.5-VL-7B shares each key/value head among 7 query heads; a shrunk model keeps at most 4.
  const int64_t key_value_heads = std::gcd(sizes.text_heads, int64_t{4});
  nlohmann::json vision = {{"depth", 32},
                           {"fullatt_block_indexes", {7, 15, 23, 31}},
                           {"hidden_act", "silu"},
                           {"hidden_size", 1280},
                           {"in_chans", 3},
                           {"intermediate_size", 3420},
                           {"model_type", "qwen2_5_vl"},
                           {"num_heads", 16},
                           {"out_hidden_size", hidden},
                           {"patch_size", 14},
                           {"spatial_merge_size", 2},
                           {"spatial_patch_size", 14},
                           {"temporal_patch_size", 2},
                           {"tokens_per_second", 2},
                           {"torch_dtype", "bfloat16"},
                           {"window_size", 112}};
  return {{"architectures", {"Qwen2_5_VLForConditionalGeneration"}},
          {"attention_dropout", 0.0},
          {"bos_token_id", 151643},
          {"eos_token_id", 151645},
          {"hidden_act", "silu"},
          {"hidden_size", hidden},
          {"image_token_id", 151655},
          {"initializer_range", 0.02},
          {"intermediate_size", 18944},
          {"max_position_embeddings", 128000},
          {"max_window_layers", 28},
          {"model_type", "qwen2_5_vl"},
          {"num_attention_heads", sizes.text_heads},
          {"num_hidden_layers", sizes.text_layers},
          {"num_key_value_heads", key_value_heads},
          {"rms_norm_eps", 1e-6},
          {"rope_scaling", {{"mrope_section", {16, 24, 24}}, {"rope_type", "default"}, {"type", "default"}}},
          {"rope_theta", 1000000.0},
          {"sliding_window", 32768},
          {"tie_word_embeddings", false},
          {"torch_dtype", "bfloat16"},
          {"transformers_version", "4.53.1"},
          {"use_cache", true},
          {"use_sliding_window", false},
          {"video_token_id", 151656},
          {"vision_config", vision},
          {"vision_end_token_id", 151653},
          {"vision_start_token_id", 151652},
          {"vision_token_id", 151654},
          {"vocab_size", 152064}};
}

nlohmann::json vae_config_json(const ComponentSizes& sizes) {
  return {{"_class_name", "AutoencoderKLQwenImage"},
          {"_diffusers_version", "0.36.0"},
          {"attn_scales", nlohmann::json::array()},
          {"base_dim", sizes.vae_base_dim},
          {"dim_mult", {1, 2, 4, 4}},
          {"dropout", 0.0},
          {"input_channels", 3},
          {"latents_mean",
           {-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517,
            -0.3632, -0.1922, -0.9497, 0.2503, -0.2921}},
          {"latents_std",
           {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
            1.6382, 1.1253, 2.8251, 1.916}},
          {"num_res_blocks", 2},
          {"temperal_downsample", {false, true, true}},
          {"z_dim", 16}};
}

nlohmann::json preprocessor_config_json() {
  return {{"do_convert_rgb", true},
          {"do_normalize", true},
          {"do_rescale", true},
          {"do_resize", true},
          {"image_mean", {0.48145466, 0.4578275, 0.40821073}},
          {"image_processor_type", "Qwen2VLImageProcessor"},
          {"image_std", {0.26862954, 0.26130258, 0.27577711}},
          {"max_pixels", 12845056},
          {"merge_size", 2},
          {"min_pixels", 3136},
          {"patch_size", 14},
          {"processor_class", "Qwen2VLProcessor"},
          {"resample", 3},
          {"rescale_factor", 0.00392156862745098},
          {"temporal_patch_size", 2}};
}

}  // namespace canvas::synthetic
