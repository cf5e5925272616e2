using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.State;

namespace UsageBilling.StripeEmulator.Api;

/// <summary>
/// The pieces the Stripe API's endpoint filters and handlers share (<see cref="StripeApiRoutes"/> maps the routes,
/// <see cref="StripeApiFilters"/> holds the filters): authentication, form parsing, the rate-limit and server-error
/// answers and the Stripe-shaped rendering of results and errors.
/// </summary>
internal sealed partial class StripeApiHandler
{
    private const string RateLimitMessage = "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.";
    public StripeApiHandler(StripeBackend backend, EmulatorRuntime runtime, IdempotencyStore idempotency, ILogger logger)
    {
        Backend = backend;
        Runtime = runtime;
        Idempotency = idempotency;
        Logger = logger;
    }

    public StripeBackend Backend { get; }

    public EmulatorRuntime Runtime { get; }

    public IdempotencyStore Idempotency { get; }

    public ILogger Logger { get; }

    internal static string Authenticate(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        string? key = null;
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            key = header[7..].Trim();
        }
        else if (header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(header[6..].Trim()));
                key = decoded.Split(':')[0];
            }
            catch (FormatException)
            {
                key = null;
            }
        }

        if (string.IsNullOrEmpty(key))
        {
            throw new StripeApiException(401, "invalid_request_error", null,
                "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
                null, "unauthorized");
        }

        if (!key.StartsWith("sk_test_", StringComparison.Ordinal) && !key.StartsWith("rk_test_", StringComparison.Ordinal))
        {
            var shown = key.Length > 8 ? key[..8] + new string('*', Math.Min(20, key.Length - 8)) : key;
            throw new StripeApiException(401, "invalid_request_error", "api_key_invalid",
                $"Invalid API Key provided: {shown}. The emulator accepts test-mode keys (sk_test_…) only.", null, "unauthorized");
        }

        return key;
    }

    internal async Task<(Params Params, string RawBody)> ReadParamsAsync(HttpContext ctx)
    {
        var request = ctx.Request;
        var max = Runtime.Options.MaxRequestBodyBytes;
        var root = FormParser.Parse(request.QueryString.HasValue ? request.QueryString.Value![1..] : null);
        if (request.ContentLength is > 0 || request.Headers.TransferEncoding.Count > 0)
        {
            var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(max, 16 * 1024) + 1);
            var length = 0;
            var tooLarge = false;
            try
            {
                while (true)
                {
                    if (length == buffer.Length)
                    {
                        if (length > max)
                        {
                            // Drain the rest so the client gets the 400 instead of a reset.
                            tooLarge = true;
                            length = 0;
                        }
                        else
                        {
                            var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, max + 1));
                            Buffer.BlockCopy(buffer, 0, bigger, 0, length);
                            ArrayPool<byte>.Shared.Return(buffer);
                            buffer = bigger;
                        }
                    }

                    var read = await request.Body.ReadAsync(buffer.AsMemory(length), ctx.RequestAborted);
                    if (read == 0)
                    {
                        break;
                    }

                    length += read;
                }

                if (tooLarge || length > max)
                {
                    throw new StripeApiException(400, "invalid_request_error", "request_body_too_large",
                        $"The request body is larger than {max} bytes.", null, "request_body_too_large");
                }

                if (length > 0)
                {
                    var contentType = request.ContentType ?? string.Empty;
                    if (!contentType.StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase))
                    {
                        throw StripeApiException.Invalid(
                            $"Invalid request: the body must be application/x-www-form-urlencoded, not '{contentType}'.", null, "invalid_content_type");
                    }

                    string body;
                    try
                    {
                        body = new UTF8Encoding(false, true).GetString(buffer, 0, length);
                    }
                    catch (DecoderFallbackException)
                    {
                        throw StripeApiException.Invalid("Invalid request body: not valid UTF-8.");
                    }

                    FormParser.Parse(body, root);
                    return (new Params(root), body);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        return (new Params(root), string.Empty);
    }

    /// <summary>A compact digest of what makes two requests "the same parameters" (kept for 24 h per key, so not the whole body).</summary>
    internal static string Fingerprint(string method, string path, string? query, string body) =>
        Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes($"{method} {path}{query}\n{body}")));

    internal static StripeApiException RateLimited(string reason, string rejection) =>
        new(429, "invalid_request_error", "rate_limit", RateLimitMessage, null, rejection)
        {
            Headers = { new("Stripe-Rate-Limited-Reason", reason) },
        };

    internal static StripeApiException ServerError(string rejection) =>
        new(500, "api_error", null, "An unknown error occurred", null, rejection);

    internal static ApiResponse Ok(JsonObject body) => new(200, Serialize(body), []);

    internal static ApiResponse Error(StripeApiException ex)
    {
        var error = new JsonObject { ["type"] = ex.Type };
        if (ex.Code is not null)
        {
            error["code"] = ex.Code;
        }

        error["message"] = ex.Message;
        if (ex.Param is not null)
        {
            error["param"] = ex.Param;
        }

        return new ApiResponse(ex.Status, Serialize(new JsonObject { ["error"] = error }), [.. ex.Headers]);
    }

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static byte[] Serialize(JsonNode node)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            node.WriteTo(writer);
        }

        return buffer.WrittenSpan.ToArray();
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Unexpected failure handling {Method} {Path}")]
    internal static partial void LogUnexpected(ILogger logger, Exception exception, string method, string path);
}
