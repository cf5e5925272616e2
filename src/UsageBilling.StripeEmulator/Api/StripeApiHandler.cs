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
/// The Stripe API surface: authentication, faults, rate limit, form parsing, idempotency, routing and
/// Stripe-shaped errors, in that order. Handlers are synchronous in-memory operations on <see cref="StripeBackend"/>.
/// </summary>
internal sealed partial class StripeApiHandler
{
    private const string RateLimitMessage = "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.";
    private readonly StripeBackend _backend;
    private readonly EmulatorRuntime _runtime;
    private readonly IdempotencyStore _idempotency;
    private readonly ILogger _logger;

    public StripeApiHandler(StripeBackend backend, EmulatorRuntime runtime, IdempotencyStore idempotency, ILogger logger)
    {
        _backend = backend;
        _runtime = runtime;
        _idempotency = idempotency;
        _logger = logger;
    }

    public async Task HandleAsync(HttpContext ctx)
    {
        var request = ctx.Request;
        var method = request.Method;
        var path = request.Path.Value ?? "/";
        if (path.StartsWith(V2MeterPathPrefix, StringComparison.Ordinal))
        {
            await HandleMeterEventV2Async(ctx, method, path);
            return;
        }

        var requestId = StripeBackend.NewId("req_", 14);
        FaultSpec? fault = null;
        ApiResponse response;
        try
        {
            var apiKey = Authenticate(request);
            fault = _runtime.TakeFault(method, path);
            switch (fault?.Kind)
            {
                case FaultKind.RateLimited:
                    throw RateLimited(fault.RateLimitedReason, "injected_rate_limit");
                case FaultKind.ServerError when !fault.StoreForIdempotency:
                    throw ServerError("injected_server_error");
            }

            if (!_runtime.TryTakeRateToken())
            {
                throw RateLimited("global-rate", "rate_limited");
            }

            _backend.ProcessDue(_backend.Now);
            var (p, rawBody) = await ReadParamsAsync(ctx);
            var route = Resolve(method, path, request, out var isMeterEvent)
                ?? throw new StripeApiException(404, "invalid_request_error", null,
                    $"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                    null, "unrecognized_url");
            if (isMeterEvent && !_runtime.TryTakeMeterEventToken())
            {
                throw RateLimited("endpoint-rate", "meter_event_rate_limited");
            }

            if (isMeterEvent && p.Node.Child("identifier")?.Value is { } identifier)
            {
                _runtime.CountMeterEventRequest(identifier, apiKey);
            }

            var key = method == "POST" ? request.Headers["Idempotency-Key"].ToString() : string.Empty;
            if (key.Length == 0)
            {
                response = await ExecuteAsync(route, p, isMeterEvent, fault, ctx.RequestAborted);
            }
            else
            {
                response = await ExecuteIdempotentAsync(apiKey, key, Fingerprint(method, path, request.QueryString.Value, rawBody), route, p, isMeterEvent, fault, ctx.RequestAborted);
            }
        }
        catch (StripeApiException ex)
        {
            _runtime.Reject(ex.RejectionReason);
            response = Error(ex);
        }
        catch (BadHttpRequestException ex)
        {
            _runtime.Reject("invalid_request_body");
            response = Error(StripeApiException.Invalid($"Invalid request body: {ex.Message}"));
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        catch (Exception ex)
        {
            LogUnexpected(_logger, ex, method, path);
            response = Error(new StripeApiException(500, "api_error", null, "An unknown error occurred", null, "internal_error"));
        }

        if (fault?.Kind == FaultKind.DropAfterProcessing)
        {
            // The effect happened; the client must see a network error, not an answer.
            ctx.Abort();
            return;
        }

        await WriteAsync(ctx, requestId, response);
    }

    private static async Task WriteAsync(HttpContext ctx, string requestId, ApiResponse response)
    {
        var http = ctx.Response;
        http.StatusCode = response.Status;
        http.Headers["Request-Id"] = requestId;
        http.Headers["Stripe-Version"] = StripeBackend.ApiVersion;
        http.ContentType = "application/json";
        foreach (var (name, value) in response.Headers)
        {
            http.Headers[name] = value;
        }

        http.ContentLength = response.Body.Length;
        await http.Body.WriteAsync(response.Body, ctx.RequestAborted);
    }

    private async Task<ApiResponse> ExecuteIdempotentAsync(
        string apiKey, string key, string fingerprint, Func<Params, JsonObject> route, Params p, bool isMeterEvent, FaultSpec? fault, CancellationToken ct)
    {
        if (key.Length > 255)
        {
            throw StripeApiException.Invalid("Idempotency-Key must be at most 255 characters long.", null, "idempotency_key_too_long");
        }

        var scoped = string.Concat(apiKey, "\n", key);
        var window = (long)_runtime.Options.IdempotencyWindow.TotalSeconds;
        var (entry, isNew) = _idempotency.Begin(scoped, fingerprint, _backend.Now, window);
        if (!isNew)
        {
            if (entry.Fingerprint != fingerprint)
            {
                throw new StripeApiException(400, "idempotency_error", null,
                    $"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request.",
                    null, "idempotency_mismatch");
            }

            if (entry.Response is not { } stored)
            {
                throw new StripeApiException(409, "idempotency_error", "idempotency_key_in_use",
                    $"There is currently another in-progress request using this Idempotency-Key ({key}). Try again later.",
                    null, "idempotency_in_progress");
            }

            return stored with { Headers = [.. stored.Headers, new("Idempotent-Replayed", "true"), new("Idempotency-Key", key)] };
        }

        ApiResponse response;
        try
        {
            if (fault is { Kind: FaultKind.ServerError, StoreForIdempotency: true })
            {
                _runtime.Reject("injected_server_error");
                response = Error(ServerError("injected_server_error"));
            }
            else
            {
                response = await ExecuteAsync(route, p, isMeterEvent, fault, ct);
            }
        }
        catch
        {
            _idempotency.Abandon(scoped, entry);
            throw;
        }

        // Stripe saves a result once the endpoint started executing; validation errors (4xx) are not saved.
        if (response.Status < 400 || response.Status >= 500)
        {
            entry.Response = response;
        }
        else
        {
            _idempotency.Abandon(scoped, entry);
        }

        return response with { Headers = [.. response.Headers, new("Idempotency-Key", key)] };
    }

    private async Task<ApiResponse> ExecuteAsync(Func<Params, JsonObject> route, Params p, bool isMeterEvent, FaultSpec? fault, CancellationToken ct)
    {
        string? slot = null;
        if (isMeterEvent && _runtime.EnforceConcurrency && _backend.MeterConcurrencyKey(p) is { } k)
        {
            if (!_runtime.TryEnter(k))
            {
                throw new StripeApiException(429, "invalid_request_error", "rate_limit",
                    "Too many concurrent requests for this customer and meter: send one meter event per customer and meter at a time.",
                    null, "concurrency")
                {
                    Headers = { new("Stripe-Rate-Limited-Reason", "resource-specific") },
                };
            }

            slot = k;
        }

        try
        {
            if (fault is { Kind: FaultKind.Delay, DelayMilliseconds: > 0 })
            {
                await Task.Delay(fault.DelayMilliseconds, ct);
            }

            try
            {
                return Ok(route(p));
            }
            catch (StripeApiException ex)
            {
                _runtime.Reject(ex.RejectionReason);
                return Error(ex);
            }
        }
        finally
        {
            if (slot is not null)
            {
                _runtime.Exit(slot);
            }
        }
    }

    private static string Authenticate(HttpRequest request)
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

    private async Task<(Params Params, string RawBody)> ReadParamsAsync(HttpContext ctx)
    {
        var request = ctx.Request;
        var max = _runtime.Options.MaxRequestBodyBytes;
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

    /// <summary>The handler of a Stripe route; <paramref name="request"/> gives the emulator root as the client called it (for URLs in answers).</summary>
    private Func<Params, JsonObject>? Resolve(string method, string path, HttpRequest request, out bool isMeterEvent)
    {
        isMeterEvent = false;
        var s = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var b = _backend;
        switch (method, s)
        {
            case ("POST", ["v1", "billing", "meter_events"]):
                isMeterEvent = true;
                return b.CreateMeterEvent;
            case ("POST", ["v1", "billing", "meter_event_adjustments"]):
                return b.CreateAdjustment;
            case ("POST", ["v1", "billing", "meters"]):
                return b.CreateMeter;
            case ("GET", ["v1", "billing", "meters"]):
                return b.ListMeters;
            case ("GET", ["v1", "billing", "meters", var id]):
                return p => b.GetMeter(id, p);
            case ("POST", ["v1", "billing", "meters", var id]):
                return p => b.UpdateMeter(id, p);
            case ("POST", ["v1", "billing", "meters", var id, "deactivate"]):
                return p => b.SetMeterStatus(id, p, active: false);
            case ("POST", ["v1", "billing", "meters", var id, "reactivate"]):
                return p => b.SetMeterStatus(id, p, active: true);
            case ("GET", ["v1", "billing", "meters", var id, "event_summaries"]):
                return p => b.EventSummaries(id, p);

            case ("POST", ["v1", "customers"]):
                return b.CreateCustomer;
            case ("GET", ["v1", "customers"]):
                return b.ListCustomers;
            case ("GET", ["v1", "customers", var id]):
                return p => b.GetCustomer(id, p);
            case ("POST", ["v1", "customers", var id]):
                return p => b.UpdateCustomer(id, p);
            case ("DELETE", ["v1", "customers", var id]):
                return p => b.DeleteCustomer(id, p);

            case ("POST", ["v1", "products"]):
                return b.CreateProduct;
            case ("GET", ["v1", "products"]):
                return b.ListProducts;
            case ("GET", ["v1", "products", var id]):
                return p => b.GetProduct(id, p);
            case ("POST", ["v1", "products", var id]):
                return p => b.UpdateProduct(id, p);

            case ("POST", ["v1", "prices"]):
                return b.CreatePrice;
            case ("GET", ["v1", "prices"]):
                return b.ListPrices;
            case ("GET", ["v1", "prices", var id]):
                return p => b.GetPrice(id, p);
            case ("POST", ["v1", "prices", var id]):
                return p => b.UpdatePrice(id, p);

            case ("POST", ["v1", "subscriptions"]):
                return b.CreateSubscription;
            case ("GET", ["v1", "subscriptions"]):
                return b.ListSubscriptions;
            case ("GET", ["v1", "subscriptions", var id]):
                return p => b.GetSubscription(id, p);
            case ("POST", ["v1", "subscriptions", var id]):
                return p => b.UpdateSubscription(id, p);
            case ("DELETE", ["v1", "subscriptions", var id]):
                return p => b.CancelSubscription(id, p);

            case ("POST", ["v1", "checkout", "sessions"]):
                return p => b.CreateCheckoutSession(p, $"{request.Scheme}://{request.Host}");
            case ("GET", ["v1", "checkout", "sessions"]):
                return b.ListCheckoutSessions;
            case ("GET", ["v1", "checkout", "sessions", var id]):
                return p => b.GetCheckoutSession(id, p);
            case ("GET", ["v1", "checkout", "sessions", var id, "line_items"]):
                return p => b.ListCheckoutLineItems(id, p);
            case ("POST", ["v1", "checkout", "sessions", var id, "expire"]):
                return p => b.ExpireCheckoutSession(id, p);

            case ("GET", ["v1", "invoices"]):
                return b.ListInvoices;
            case ("GET", ["v1", "invoices", var id]):
                return p => b.GetInvoice(id, p);

            case ("POST", ["v1", "webhook_endpoints"]):
                return b.CreateWebhookEndpoint;
            case ("GET", ["v1", "webhook_endpoints"]):
                return b.ListWebhookEndpoints;
            case ("GET", ["v1", "webhook_endpoints", var id]):
                return p => b.GetWebhookEndpoint(id, p);
            case ("POST", ["v1", "webhook_endpoints", var id]):
                return p => b.UpdateWebhookEndpoint(id, p);
            case ("DELETE", ["v1", "webhook_endpoints", var id]):
                return p => b.DeleteWebhookEndpoint(id, p);

            case ("GET", ["v1", "events"]):
                return b.ListEvents;
            case ("GET", ["v1", "events", var id]):
                return p => { p.AllowOnly(); return b.GetEvent(id); };
            case ("GET", ["v2", "core", "events", var id]):
                return p => { p.AllowOnly(); return b.GetV2Event(id); };
            default:
                return null;
        }
    }

    /// <summary>A compact digest of what makes two requests "the same parameters" (kept for 24 h per key, so not the whole body).</summary>
    private static string Fingerprint(string method, string path, string? query, string body) =>
        Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes($"{method} {path}{query}\n{body}")));

    private static StripeApiException RateLimited(string reason, string rejection) =>
        new(429, "invalid_request_error", "rate_limit", RateLimitMessage, null, rejection)
        {
            Headers = { new("Stripe-Rate-Limited-Reason", reason) },
        };

    private static StripeApiException ServerError(string rejection) =>
        new(500, "api_error", null, "An unknown error occurred", null, rejection);

    private static ApiResponse Ok(JsonObject body) => new(200, Serialize(body), []);

    private static ApiResponse Error(StripeApiException ex)
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
    private static partial void LogUnexpected(ILogger logger, Exception exception, string method, string path);
}
