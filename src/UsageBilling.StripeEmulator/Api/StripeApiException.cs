namespace UsageBilling.StripeEmulator.Api;

/// <summary>An error that the emulator answers in Stripe's shape: <c>{"error":{"type","code","message","param"}}</c>.</summary>
internal sealed class StripeApiException : Exception
{
    public StripeApiException(int status, string type, string? code, string message, string? param = null, string? rejectionReason = null)
        : base(message)
    {
        Status = status;
        Type = type;
        Code = code;
        Param = param;
        RejectionReason = rejectionReason ?? code ?? type;
    }

    public int Status { get; }

    public string Type { get; }

    public string? Code { get; }

    public string? Param { get; }

    /// <summary>The key under which the inspection API counts this rejection.</summary>
    public string RejectionReason { get; }

    /// <summary>Extra response headers, e.g. <c>Stripe-Should-Retry</c>.</summary>
    public List<KeyValuePair<string, string>> Headers { get; } = [];

    public static StripeApiException Invalid(string message, string? param = null, string? code = null) =>
        new(400, "invalid_request_error", code, message, param);

    public static StripeApiException Missing(string param) =>
        new(400, "invalid_request_error", "parameter_missing", $"Missing required param: {param}.", param);

    public static StripeApiException Unknown(string param) =>
        new(400, "invalid_request_error", "parameter_unknown", $"Received unknown parameter: {param}", param);

    public static StripeApiException NoSuch(string resource, string id, string param = "id") =>
        new(404, "invalid_request_error", "resource_missing", $"No such {resource}: '{id}'", param);
}
